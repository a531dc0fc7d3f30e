import pytest
from tests.factories.parties import accountant, finance_lead

pytestmark = pytest.mark.django_db


def test_render(client):
    client.force_login(finance_lead())
    r = client.get("/admin/")
    assert r.status_code == 200, r.content[:3000]
    open("/tmp/h9_dash.html", "wb").write(r.content)
