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


def test_a_message_added_again_with_its_key_is_stored_once(tmp_path):
    store = SessionStore(tmp_path / "s.db")
    s = store.create()
    first = store.add_message(s.session_id, "kefu", "退款已原路退回", key="return-W1:refund")
    again = store.add_message(s.session_id, "kefu", "退款已原路退回", key="return-W1:refund")  # a retried activity
    other = store.add_message(s.session_id, "agent:li", "Hello, I'm Li.")
    assert again == first and other > first
    assert [(m.id, m.author, m.text) for m in store.messages(s.session_id)] == [
        (first, "kefu", "退款已原路退回"), (other, "agent:li", "Hello, I'm Li."),
    ]
    assert [m.id for m in store.messages(s.session_id, after_id=first)] == [other]
    # Keys are per session; messages without a key are never merged.
    t = store.create()
    assert store.add_message(t.session_id, "kefu", "x", key="return-W1:refund") != first
    assert store.add_message(t.session_id, "kefu", "y") != store.add_message(t.session_id, "kefu", "y")
    assert len(SessionStore(tmp_path / "s.db").get(s.session_id).messages) == 2


def test_a_message_needs_a_known_session_and_text(tmp_path):
    import pytest

    store = SessionStore(tmp_path / "s.db")
    with pytest.raises(LookupError):
        store.add_message("nope", "kefu", "hi")
    with pytest.raises(ValueError):
        store.add_message(store.create().session_id, "kefu", "  ")


def test_one_agent_holds_a_session_until_it_is_released(tmp_path):
    store = SessionStore(tmp_path / "s.db")
    s = store.create()
    store.append_turn(s.session_id, _turn(1), handoff="requested")
    assert store.hold(s.session_id, "li") == "li"
    assert store.hold(s.session_id, "wang") == "li"  # taken: the first agent keeps it
    assert store.hold(s.session_id, "li") == "li"
    held = store.get(s.session_id)
    assert (held.handoff, held.held_by) == ("agent", "li")
    assert not store.release(s.session_id, "wang", note="not mine")
    assert store.release(s.session_id, "li", note="refund promised; kefu can take it from here")
    back = store.get(s.session_id)
    assert (back.handoff, back.held_by, back.agent_note) == ("bot", "", "refund promised; kefu can take it from here")
    assert store.holders([s.session_id, "nope"]) == {s.session_id: ("bot", "")}


def test_a_turn_records_the_last_message_it_delivered(tmp_path):
    store = SessionStore(tmp_path / "s.db")
    s = store.create()
    m = store.add_message(s.session_id, "agent:li", "Could you send a photo?")
    store.append_turn(s.session_id, _turn(1), delivered_through=m)
    store.append_turn(s.session_id, _turn(2), delivered_through=0)  # nothing delivered: unchanged
    assert store.get(s.session_id).delivered_through == m
    assert [t.index for t in store.turns_after(s.session_id, 1)] == [2]


def test_a_session_store_from_before_agents_gains_the_columns_and_keeps_its_sessions(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE sessions (session_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL DEFAULT '', channel TEXT NOT NULL DEFAULT '',"
        " created_at TEXT NOT NULL, handoff TEXT NOT NULL DEFAULT 'bot');"
        "INSERT INTO sessions(session_id, created_at, handoff) VALUES ('old', '2026-11-01T00:00:00+00:00', 'requested');"
    )
    conn.commit()
    conn.close()
    store = SessionStore(path)
    old = store.get("old")
    assert (old.handoff, old.held_by, old.agent_note, old.state, old.messages) == ("requested", "", "", "", [])
    assert store.hold("old", "li") == "li"
