"""The core starts, an operator logs in, and tenants stay apart."""


def test_a_customer_user_gets_404_for_another_customers_account(world, api):
    client = api(world.user_a)
    assert client.get(f"/api/v1/accounts/{world.customer_a.id}").status_code == 200
    resp = client.get(f"/api/v1/accounts/{world.customer_b.id}")
    assert resp.status_code == 404
    assert resp.get_json()["code"] == "not_found"


def test_the_panel_also_answers_404_outside_the_subtree(world, panel):
    client = panel(world.user_a)
    assert client.get(f"/accounts/{world.customer_a.id}").status_code == 200
    assert client.get(f"/accounts/{world.customer_b.id}").status_code == 404
    assert client.get(f"/accounts/{world.provider.id}").status_code == 404


def test_the_operator_sees_the_whole_tree(world, api):
    names = [a["name"] for a in api(world.operator).get("/api/v1/accounts").get_json()]
    assert names == ["Provider", "Customer A", "Customer B"]
