from services.dialog.sessions import SessionStore, StoredAction, StoredCitation, TurnRecord


def _turn(i: int) -> TurnRecord:
    return TurnRecord(
        index=i, customer_text=f"q{i}", reply_text=f"a{i}", intent="return_policy",
        actions=[StoredAction("answer", detail={"doc_id": "returns-7day-zh"})],
        citations=[StoredCitation("returns-7day-zh", "七天无理由退货政策", "0", "…", 0.97, 3)],
        created_at="2026-11-21T10:00:00+00:00",
    )


def test_turns_round_trip_and_survive_reopen(tmp_path):
    store = SessionStore(tmp_path / "s.db")
    s = store.create(customer_id="C0001", channel="web")
    store.append_turn(s.session_id, _turn(1))
    store.append_turn(s.session_id, _turn(2), handoff="requested")
    again = SessionStore(tmp_path / "s.db").get(s.session_id)
    assert again is not None
    assert [t.index for t in again.turns] == [1, 2]
    assert again.turns[0].citations[0].kb_version == 3
    assert again.turns[1].actions[0].detail == {"doc_id": "returns-7day-zh"}
    assert again.handoff == "requested" and again.customer_id == "C0001"


def test_unknown_session_is_none(tmp_path):
    assert SessionStore(tmp_path / "s.db").get("nope") is None


def test_a_turn_index_is_written_once(tmp_path):
    import sqlite3

    import pytest

    store = SessionStore(tmp_path / "s.db")
    s = store.create()
    store.append_turn(s.session_id, _turn(1))
    with pytest.raises(sqlite3.IntegrityError):
        store.append_turn(s.session_id, _turn(1))
    assert len(store.get(s.session_id).turns) == 1
