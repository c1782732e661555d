"""``kefu store import|export|reset|show`` in-process, on a KEFU_HOME of its own."""

from __future__ import annotations

import json

import pytest

from services.cli import main
from services.config import REPO_ROOT, load_config
from services.erp import open_store, reset_store
from services.erp.tau_retail import TauRetailStore

DATA = REPO_ROOT.parent / "shared" / "data" / "tau_bench_retail" / "data"
FILES = ("users.json", "orders.json", "products.json")

pytestmark = pytest.mark.skipif(not (DATA / "orders.json").is_file(), reason=f"τ-bench retail data not found at {DATA}")


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.delenv("KEFU_CONFIG", raising=False)
    monkeypatch.setenv("KEFU_HOME", str(tmp_path / "home"))
    # "kefu not running" for this home, also on a machine where a kefu runs on the default ports.
    from tests.triton_fixtures import free_ports

    monkeypatch.setenv("KEFU_PORTS_KNOWLEDGE", str(free_ports(1)[0]))
    return tmp_path / "home"


def test_import_change_export_round_trip(home, tmp_path, capsys):
    assert main(["store", "import", "--format", "tau-retail", str(DATA)]) == 0
    out = capsys.readouterr().out
    assert "imported 500 customers, 1000 orders, 50 products" in out and "erp.db (tau-retail)" in out
    store = open_store(load_config())
    assert isinstance(store, TauRetailStore) and store.path == home / "erp.db"

    assert main(["store", "export", str(tmp_path / "same")]) == 0
    assert "exported 500 customers" in capsys.readouterr().out
    for name in FILES:
        assert json.loads((tmp_path / "same" / name).read_text(encoding="utf-8")) == json.loads((DATA / name).read_text(encoding="utf-8"))

    # A change made through the port is in the next export.
    assert store.apply("cancel_pending_order", {"order_id": "#W8306539", "reason": "no longer needed"}).done
    assert main(["store", "export", str(tmp_path / "changed")]) == 0
    orders = json.loads((tmp_path / "changed" / "orders.json").read_text(encoding="utf-8"))
    assert orders["#W8306539"]["status"] == "cancelled"
    users = json.loads((tmp_path / "changed" / "users.json").read_text(encoding="utf-8"))
    assert users["daiki_jackson_4362"]["payment_methods"]["gift_card_9164233"]["balance"] == 215.17

    # The export imports back as it is.
    assert main(["store", "import", str(tmp_path / "changed")]) == 0
    assert open_store(load_config()).get_order("#W8306539").status == "cancelled"
    assert main(["store", "show"]) == 0
    assert "tau-retail" in capsys.readouterr().out


def test_reset_goes_back_to_the_demo_store(home, capsys):
    assert main(["store", "import", str(DATA)]) == 0
    assert open_store(load_config()) is not None
    assert main(["store", "reset"]) == 0
    assert "the demo store is active" in capsys.readouterr().out
    store = open_store(load_config())
    assert store.format == "demo" and store.currency == "CNY"
    assert store.get_order("#W8306539") is None and store.get_order("KF2026090300101") is not None
    assert main(["store", "reset"]) == 0  # again is fine
    assert main(["store", "show"]) == 0
    assert "demo at" in capsys.readouterr().out
    reset_store(load_config())  # and from code too
    assert open_store(load_config()).format == "demo"


def test_bad_input_fails_cleanly_and_changes_nothing(home, tmp_path, capsys):
    assert main(["store", "import", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kefu store import:") and "missing" in err and "not a directory" in err and "Traceback" not in err
    assert open_store(load_config()) is None

    assert main(["store", "import", str(DATA)]) == 0
    before = open_store(load_config()).meta()["imported_at"]
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in FILES:
        (bad / name).write_bytes((DATA / name).read_bytes())
    (bad / "users.json").write_text("{not json", encoding="utf-8")
    capsys.readouterr()
    assert main(["store", "import", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "users.json: not valid JSON" in err and "the store was not changed" in err
    assert open_store(load_config()).meta()["imported_at"] == before

    assert main(["store", "import", "--format", "magento", str(DATA)]) == 1
    assert "unknown format 'magento'; supported: tau-retail" in capsys.readouterr().err
    assert main(["store", "export", "--format", "magento", str(tmp_path / "x")]) == 1

    (tmp_path / "file").write_text("", encoding="utf-8")
    assert main(["store", "export", str(tmp_path / "file" / "out")]) == 1
    assert "kefu store export:" in capsys.readouterr().err

    assert main(["store", "reset"]) == 0
    assert main(["store", "export", str(tmp_path / "out")]) == 1
    assert "is 'demo', not 'tau-retail'" in capsys.readouterr().err


def test_import_ingests_the_policy_as_the_stores_knowledge_and_reset_removes_it(home, tmp_path, capsys):
    """With kefu not running, the policy goes to the local index (the service picks it up)."""
    import sqlite3

    policy = DATA.parent / "wiki.md"
    assert main(["store", "import", str(DATA)]) == 0
    out = capsys.readouterr().out
    assert "knowledge: wiki.md (1 document) ingested into the local index" in out and "pack:tau-retail" in out

    def docs() -> list[tuple[str, str]]:
        with sqlite3.connect(home / "knowledge.db") as conn:
            return conn.execute("SELECT id, body FROM documents WHERE id = 'doc:wiki.md'").fetchall()

    assert len(docs()) == 1 and "pack:tau-retail" in docs()[0][1]
    assert main(["store", "reset"]) == 0
    assert "removed the imported store's policy (doc:wiki.md)" in capsys.readouterr().out
    assert docs() == []
    assert main(["store", "import", "--no-policy", str(DATA)]) == 0
    assert "knowledge:" not in capsys.readouterr().out and docs() == []
    assert policy.is_file()
