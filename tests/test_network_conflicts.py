"""The conflicts' routes (``labhub.api.network_conflicts``): each person sees the conflicts
of the labs they may read; marking one seen keeps the first person, needs
``network.manage`` at its lab, and an unknown one is a 404."""

from __future__ import annotations

from fastapi.testclient import TestClient
from signed_in import as_admin, person_token

from inventory import sites
from inventory.replica import Conflict
from labhub import db
from labhub.access.permissions import Grant, Role
from labhub.app import create_app
from labhub.network import conflicts
from labhub.settings import Settings

V1 = "/api/v1/network/conflicts"


def test_conflicts_are_listed_in_scope_and_marked_seen_once(settings: Settings) -> None:
    with as_admin(TestClient(create_app(settings))) as admin:
        url = settings.resolved_database_url()
        engine = db.make_engine(url)
        with engine.begin() as conn:
            sites.create_site(conn=conn, code="VL", name="Valle", kind="network", by="t")
            for region, lab in (("R1", "LAB-A"), ("R2", "LAB-C")):
                sites.create_site(conn=conn, code=region, name=region, kind="region",
                                  by="t", parent_code="VL")
                sites.create_site(conn=conn, code=lab, name=lab, kind="site", by="t",
                                  parent_code=region, tier="lab_point")
            for lab in ("LAB-A", "LAB-C"):
                found = Conflict("assets", f"{lab}-1", {"condition": "fair"},
                                 {"condition": "good"}, "owner wins: the lab's version")
                assert conflicts.keep(conn, lab, [found, found]) == 1
                assert conflicts.keep(conn, lab, [found]) == 0  # found again: kept once
        engine.dispose()
        coordinator = person_token(url, "coral", Grant(Role.COORDINATOR, "R1"))
        ministry = person_token(url, "mina", Grant(Role.MINISTRY, "VL"))
        page = admin.get(V1).json()
        assert page["total"] == 2
        mine = admin.get(V1, headers={"Authorization": f"Bearer {coordinator}"}).json()
        assert [c["site"] for c in mine["items"]] == ["LAB-A"]
        (item,) = mine["items"]
        assert (item["kind"], item["key"], item["kept"], item["set_aside"]) == (
            "assets", "LAB-A-1", {"condition": "fair"}, {"condition": "good"})
        other = next(c for c in page["items"] if c["site"] == "LAB-C")
        refused = admin.post(f"{V1}/{other['id']}/seen",
                             headers={"Authorization": f"Bearer {coordinator}"})
        assert refused.status_code == 403
        assert admin.post(f"{V1}/{item['id']}/seen",
                          headers={"Authorization": f"Bearer {ministry}"}).status_code == 403
        seen = admin.post(f"{V1}/{item['id']}/seen",
                          headers={"Authorization": f"Bearer {coordinator}"})
        assert seen.status_code == 200 and seen.json()["seen_by"] == "coral"
        again = admin.post(f"{V1}/{item['id']}/seen")
        assert again.json()["seen_by"] == "coral"  # the first one stays
        assert admin.get(V1, params={"unseen": "true"}).json()["total"] == 1
        missing = admin.post(f"{V1}/00000000-0000-4000-8000-000000000000/seen")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
