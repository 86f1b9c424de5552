/* Billhive panel behaviour. The Content-Security-Policy allows scripts from this origin only
   (no inline <script>, no on...= attributes), so every page's behaviour lives here and is
   switched on by data attributes:

   form[data-confirm="question"]        asks in a styled <dialog> before submitting (every
                                        destructive action: delete, remove, disable, void,
                                        suspend, close, deactivate); data-confirm-label names
                                        the confirming button (default: the form's button text)
   select[data-autosubmit]              submits its form when changed
   select[data-profile-switch]          shows the .profile[data-type=<value>] block, disables the others' fields
   #progress[data-url]                  follows a bill run (polls the JSON status)
   [data-panel="dialog-id"]             opens that <dialog>; [data-close] inside one closes it
   [data-assign="dialog-id target-id"]  copies the dialog's checked boxes into target as chips with hidden inputs
   fieldset.priv-group input.select-all checks/unchecks the group's privileges, follows them
   input[data-search="json-url"]        the header's search box: offers answers as typed (core.find)
*/
(function () {
  "use strict";

  function each(selector, fn, root) {
    Array.prototype.forEach.call((root || document).querySelectorAll(selector), fn);
  }

  var confirmBox = null;

  function confirmDialog() {
    if (confirmBox) { return confirmBox; }
    confirmBox = document.createElement("dialog");
    confirmBox.id = "confirm-dialog";
    confirmBox.className = "confirm";
    confirmBox.setAttribute("aria-labelledby", "confirm-text");
    var text = document.createElement("p");
    text.id = "confirm-text";
    var actions = document.createElement("div");
    actions.className = "actions";
    var cancel = document.createElement("button");
    cancel.type = "button"; cancel.className = "secondary"; cancel.textContent = "Cancel";
    cancel.dataset.cancel = "";
    var ok = document.createElement("button");
    ok.type = "button"; ok.className = "danger"; ok.dataset.ok = "";
    actions.appendChild(cancel); actions.appendChild(ok);
    confirmBox.appendChild(text); confirmBox.appendChild(actions);
    document.body.appendChild(confirmBox);
    cancel.addEventListener("click", function () { closeDialog(confirmBox); });
    return confirmBox;
  }

  function submitConfirmed(form, submitter) {
    form.dataset.confirmed = "yes";
    if (form.requestSubmit) { form.requestSubmit(submitter || undefined); return; }
    if (submitter && submitter.name) {  // form.submit() would drop the pressed button's value
      var hidden = document.createElement("input");
      hidden.type = "hidden"; hidden.name = submitter.name; hidden.value = submitter.value;
      form.appendChild(hidden);
    }
    form.submit();
  }

  function confirmations() {
    each("form[data-confirm]", function (form) {
      form.addEventListener("submit", function (event) {
        if (form.dataset.confirmed === "yes") { delete form.dataset.confirmed; return; }
        event.preventDefault();
        var submitter = event.submitter || form.querySelector("button[type=submit],button:not([type])");
        var box = confirmDialog();
        box.querySelector("#confirm-text").textContent = form.dataset.confirm;
        var ok = box.querySelector("[data-ok]");
        var label = form.dataset.confirmLabel || (submitter && (submitter.getAttribute("title") || submitter.textContent.trim()));
        ok.textContent = label && label.length < 40 ? label : "Confirm";
        var fresh = ok.cloneNode(true);  // one listener: the form asking now
        ok.parentNode.replaceChild(fresh, ok);
        fresh.addEventListener("click", function () {
          closeDialog(box);
          submitConfirmed(form, submitter);
        });
        openDialog(box);
        box.querySelector("[data-cancel]").focus();
      });
    });
  }

  function autosubmit() {
    each("select[data-autosubmit]", function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  function profileSwitch() {
    each("select[data-profile-switch]", function (select) {
      select.addEventListener("change", function () {
        each(".profile", function (p) {
          p.hidden = p.dataset.type !== select.value;
          each("input,select", function (i) { i.disabled = p.hidden; }, p);
        });
      });
    });
  }

  function setText(id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = value; }
  }

  function billRunProgress() {
    var box = document.getElementById("progress");
    if (!box || !box.dataset.url) { return; }
    (function poll() {
      fetch(box.dataset.url, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (run) {
        ["status", "done", "total", "created", "skipped"].forEach(function (k) { setText("run-" + k, run[k]); });
        var bar = document.getElementById("run-bar");
        if (bar) { bar.max = run.total || 1; bar.value = run.done; }
        setText("run-failures", (run.failures || []).map(function (f) {
          return (f.account || "") + " " + (f.period || "") + ": " + f.error;
        }).join("\n"));
        var files = document.getElementById("run-files");
        if (files) { files.hidden = !run.files_pending; }
        setText("run-files-pending", run.files_pending || 0);
        var interrupted = document.getElementById("run-interrupted");
        if (interrupted) { interrupted.hidden = run.status !== "interrupted"; }
        if (run.status === "queued" || run.status === "running") { setTimeout(poll, 500); }
      });
    })();
  }

  function openDialog(d) { if (d.showModal) { d.showModal(); } else { d.setAttribute("open", ""); } }
  function closeDialog(d) { if (d.close) { d.close(); } else { d.removeAttribute("open"); } }

  function dialogs() {
    each("[data-panel]", function (b) {
      b.addEventListener("click", function () { openDialog(document.getElementById(b.dataset.panel)); });
    });
    each("dialog [data-close]", function (b) {
      b.addEventListener("click", function () { closeDialog(b.closest("dialog")); });
    });
    var names = {user: "user_ids", team: "team_ids", number: "number_ids"};
    each("[data-assign]", function (b) {
      var ids = b.dataset.assign.split(" ");
      b.addEventListener("click", function () {
        var panel = document.getElementById(ids[0]), target = document.getElementById(ids[1]);
        target.innerHTML = "";
        each("input[type=checkbox]:checked", function (box) {
          var chip = document.createElement("span");
          chip.className = "badge" + (box.dataset.kind === "team" ? " on" : "");
          chip.dataset.kind = box.dataset.kind;
          chip.textContent = box.dataset.label;
          var hidden = document.createElement("input");
          hidden.type = "hidden"; hidden.name = names[box.dataset.kind]; hidden.value = box.value;
          chip.appendChild(hidden);
          target.appendChild(chip);
          target.appendChild(document.createTextNode(" "));
        }, panel);
        closeDialog(panel);
      });
    });
  }

  function selectAll() {
    each("fieldset.priv-group", function (fs) {
      var all = fs.querySelector("input.select-all");
      if (!all) { return; }
      var boxes = fs.querySelectorAll("input[name=privileges]");
      function sync() { all.checked = Array.prototype.every.call(boxes, function (b) { return b.checked; }); }
      all.addEventListener("change", function () { Array.prototype.forEach.call(boxes, function (b) { b.checked = all.checked; }); });
      Array.prototype.forEach.call(boxes, function (b) { b.addEventListener("change", sync); });
      sync();
    });
  }

  // The header's search box as a combobox (WAI-ARIA): answers appear as one types; ArrowDown
  // and ArrowUp move through them, Enter opens the one chosen (or, with none, the results
  // page), Escape closes the list; "/" anywhere outside a field puts the cursor in the box.
  function searchBox() {
    var input = document.querySelector("input[data-search]");
    if (!input) { return; }
    var list = document.getElementById(input.getAttribute("aria-controls"));
    var active = -1, timer = null, asked = "";
    var kinds = {section: "Page", account: "Account", invoice: "Invoice"};

    function options() { return list.querySelectorAll("[role=option]"); }
    function close() {
      list.hidden = true; input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant"); active = -1;
    }
    function mark(index) {
      var opts = options();
      if (!opts.length) { return; }
      active = (index + opts.length) % opts.length;
      Array.prototype.forEach.call(opts, function (o, i) { o.setAttribute("aria-selected", i === active ? "true" : "false"); });
      input.setAttribute("aria-activedescendant", opts[active].id);
      opts[active].scrollIntoView({block: "nearest"});
    }
    function show(answer) {
      list.innerHTML = "";
      active = -1;
      var hits = answer.hits || [];
      hits.forEach(function (hit, i) {
        var li = document.createElement("li");
        li.id = "global-search-option-" + i;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        li.dataset.url = hit.url;
        var kind = document.createElement("span");
        kind.className = "badge"; kind.textContent = kinds[hit.kind] || hit.kind;
        var label = document.createElement("span");
        label.className = "hit-label"; label.textContent = hit.label;
        var detail = document.createElement("span");
        detail.className = "muted"; detail.textContent = hit.detail;
        li.appendChild(kind); li.appendChild(label); li.appendChild(detail);
        li.addEventListener("mousedown", function (event) { event.preventDefault(); window.location.assign(hit.url); });
        list.appendChild(li);
      });
      var all = document.createElement("li");
      all.id = "global-search-option-all";
      all.setAttribute("role", "option");
      all.setAttribute("aria-selected", "false");
      all.className = "search-all";
      all.dataset.url = input.form.action + "?q=" + encodeURIComponent(answer.q || input.value);
      all.textContent = answer.error ? answer.error : (hits.length ? "All results for “" + answer.q + "”" : "Nothing found for “" + answer.q + "”: see all results");
      all.addEventListener("mousedown", function (event) { event.preventDefault(); window.location.assign(all.dataset.url); });
      list.appendChild(all);
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
    }
    function ask() {
      var text = input.value.trim();
      if (!text) { close(); asked = ""; return; }
      if (text === asked) { return; }
      asked = text;
      fetch(input.dataset.search + "?q=" + encodeURIComponent(text), {credentials: "same-origin", headers: {Accept: "application/json"}})
        .then(function (r) { return r.json(); })
        .then(function (answer) { if (input.value.trim() === text) { show(answer); } })
        .catch(function () { /* offline or logged out: the form still submits */ });
    }
    input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(ask, 150); });
    input.addEventListener("keydown", function (event) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        if (list.hidden) { asked = ""; ask(); return; }
        mark(active + (event.key === "ArrowDown" ? 1 : -1));
      } else if (event.key === "Enter" && !list.hidden && active >= 0) {
        event.preventDefault();
        window.location.assign(options()[active].dataset.url);
      } else if (event.key === "Escape" && !list.hidden) {
        event.preventDefault();  // a search field clears itself on Escape: close the list only
        close();
      }
    });
    input.addEventListener("blur", function () { setTimeout(close, 100); });
    document.addEventListener("keydown", function (event) {
      var t = event.target;
      if (event.key === "/" && !(t.closest && t.closest("input, textarea, select, [contenteditable]"))) {
        event.preventDefault(); input.focus();
      }
    });
  }

  function start() {
    confirmations(); autosubmit(); profileSwitch(); billRunProgress(); dialogs(); selectAll();
    searchBox();
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
