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

  function start() {
    confirmations(); autosubmit(); profileSwitch(); billRunProgress(); dialogs(); selectAll();
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
