"""PII detection with validation, reversible masking, and masking of log records."""

from __future__ import annotations

import io
import logging

import pytest

from services.nlu.pii import (
    ORDER_ID,
    PiiLogFilter,
    id_check_char,
    install_pii_log_filter,
    luhn_valid,
    mask_pii,
    valid_bank_card,
    valid_resident_id,
)

VALID_ID = "11010519491231002X"  # a published sample number; check character X
VALID_ID_2 = "440301199003071230"
PHONE = "13812345678"
EMAIL = "li.lei@example.com"
CARD = "6250941006528599"  # UnionPay test card number (valid Luhn digit)


def types(text: str) -> list[tuple[str, str]]:
    return [(s.type, s.value) for s in mask_pii(text).spans]


# ---------------------------------------------------------------- round trip


def test_round_trip_is_exact_and_masked_text_has_no_raw_values():
    text = (
        f"订单KF2026110100299没到。手机 +86 138-1234-5678，邮箱{EMAIL}，身份证{VALID_ID}，"
        f"退款到银行卡 6250 9410 0652 8599，地址：北京市朝阳区建国路88号SOHO现代城2号楼1203室"
    )
    masked = mask_pii(text)
    assert masked.unmask() == text
    for raw in ("138-1234-5678", EMAIL, VALID_ID, "6250 9410 0652 8599", "建国路88号", "1203室"):
        assert raw not in masked.text
    assert "KF2026110100299" in masked.text
    assert [s.placeholder for s in masked.spans] == ["[PHONE_1]", "[EMAIL_1]", "[ID_CARD_1]", "[BANK_CARD_1]", "[ADDRESS_1]"]
    for span in masked.spans:  # offsets point into the input
        assert text[span.start : span.end] == span.value


def test_same_value_same_placeholder_and_reply_unmasking():
    text = f"call {PHONE}, or {PHONE} again, or 13987654321; mail {EMAIL}"
    masked = mask_pii(text)
    assert masked.text == "call [PHONE_1], or [PHONE_1] again, or [PHONE_2]; mail [EMAIL_1]"
    assert masked.unmask() == text
    reply = "We will call [PHONE_2] and write to [EMAIL_1]; [PHONE_9] is not ours."
    assert masked.unmask(reply) == f"We will call 13987654321 and write to {EMAIL}; [PHONE_9] is not ours."


def test_literal_placeholder_in_the_input_survives_the_round_trip():
    text = f"my note says [PHONE_1] but my number is {PHONE}"
    masked = mask_pii(text)
    assert masked.spans[0].placeholder == "[PHONE_2]"
    assert masked.unmask() == text


def test_nothing_to_mask():
    masked = mask_pii("Where is my order KF2026110100299?")
    assert masked.text == "Where is my order KF2026110100299?"
    assert masked.spans == [] and masked.values == {}
    assert masked.unmask() == masked.text


def test_repr_of_a_match_hides_the_value():
    masked = mask_pii(f"mail {EMAIL}")
    assert EMAIL not in repr(masked)
    assert "[EMAIL_1]" in repr(masked)


# ---------------------------------------------------------------- validation


def test_resident_id_checksum_and_birth_date():
    assert id_check_char(VALID_ID[:17]) == "X"
    assert valid_resident_id(VALID_ID) and valid_resident_id(VALID_ID_2)
    fake = VALID_ID[:17] + "1"  # wrong check character
    assert not valid_resident_id(fake)
    bad_date = "11010519491331002"  # month 13, with a matching check character
    assert not valid_resident_id(bad_date + id_check_char(bad_date))
    bad_province = "99010519491231002"
    assert not valid_resident_id(bad_province + id_check_char(bad_province))


def test_fake_id_number_is_not_masked_as_id_card():
    fake = "110105194912310021"  # check character should be X
    assert not valid_resident_id(fake) and not luhn_valid(fake)
    assert types(f"身份证{fake}") == []
    assert types(f"身份证{VALID_ID}") == [("id_card", VALID_ID)]
    assert types(f"ID: {VALID_ID.lower()}") == [("id_card", VALID_ID.lower())]
    assert types("身份证 440301 19900307 1230") == [("id_card", "440301 19900307 1230")]


def test_old_15_digit_id_only_after_an_id_word():
    assert types("身份证号110105491231002") == [("id_card", "110105491231002")]
    assert types("tracking 110105491231002") == []


@pytest.mark.parametrize("card", ["4111111111111111", "5500000000000004", "378282246310005", "6011111111111117", CARD])
def test_luhn_valid_cards_are_masked(card):
    assert luhn_valid(card) and valid_bank_card(card)
    assert types(f"card {card} please") == [("bank_card", card)]
    wrong = card[:-1] + str((int(card[-1]) + 1) % 10)
    assert not luhn_valid(wrong)
    assert types(f"card {wrong} please") == []


def test_grouped_card_numbers():
    assert types("卡号 6250-9410-0652-8599") == [("bank_card", "6250-9410-0652-8599")]
    assert types("card 4111 1111 1111 1111, thanks") == [("bank_card", "4111 1111 1111 1111")]


def test_numbers_that_are_not_cards():
    # parcel tracking numbers and other digit runs: no card-network prefix, or no valid Luhn digit
    assert types("快递单号773012345678901") == []
    assert types("tracking 1234567890123") == []


# ---------------------------------------------------------------- phones, emails, order ids


@pytest.mark.parametrize(
    "phone", ["13812345678", "+8613812345678", "+86 138 1234 5678", "0086-138-1234-5678", "138-1234-5678", "199 1234 5678"]
)
def test_mobile_formats(phone):
    assert types(f"电话{phone}谢谢") == [("phone", phone)]


@pytest.mark.parametrize("not_phone", ["12345678901", "23812345678", "138123456789", "1381234567"])
def test_not_mobile_numbers(not_phone):
    assert [t for t, _ in types(f"number {not_phone} ok")] != ["phone"]


def test_landline_with_area_code():
    assert types("座机010-62345678") == [("phone", "010-62345678")]
    assert types("date 2026-11-01") == []


def test_emails():
    assert types("邮箱li.lei@example.com谢谢") == [("email", EMAIL)]
    assert types("QQ邮箱 123456789@qq.com") == [("email", "123456789@qq.com")]
    assert types("write to Zhang.San+shop@mail.example.co.uk.") == [("email", "Zhang.San+shop@mail.example.co.uk")]


def test_order_ids_are_not_pii():
    assert ORDER_ID.search("订单KF2026110100299还没到")  # no word boundary needed next to Chinese
    assert types("订单KF1381234567890还没到") == []  # digits of an order id that look like a phone
    assert types("order kf2026110100299 and phone 13812345678") == [("phone", "13812345678")]


# ---------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    "address",
    [
        "北京市朝阳区建国路88号SOHO现代城2号楼1203室",
        "上海市浦东新区张江路100弄5号",
        "广东省深圳市南山区科苑路15号",
        "杭州市西湖区文三路478号华星时代广场A座",
        "海淀区中关村大街1号",
    ],
)
def test_chinese_addresses(address):
    assert types(f"寄到{address}，谢谢") == [("address", address)]


@pytest.mark.parametrize(
    "address",
    ["1200 Market Street, Apt 5, San Francisco", "1200 Market Street, Apt 5, San Francisco, CA 94103", "42 elm street"],
)
def test_english_addresses(address):
    assert types(f"Ship it to {address}. Thanks") == [("address", address)]


@pytest.mark.parametrize(
    "text",
    [
        "发货到北京市朝阳区了吗",  # a district is not an address of a person
        "请问5号能到吗",
        "我买了3件，还没到",
        "I have 2 orders on the way and 3 items way too expensive",
        "It took 5 days to arrive",
    ],
)
def test_not_addresses(text):
    assert types(text) == []


# ---------------------------------------------------------------- logs


def _logger_with_buffer(name: str) -> tuple[logging.Logger, io.StringIO]:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for h in list(logger.handlers):
        logger.removeHandler(h)
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger, buffer


def test_log_lines_go_out_masked():
    logger, buffer = _logger_with_buffer("kefu.test.pii.logs")
    install_pii_log_filter(logger)
    install_pii_log_filter(logger)  # idempotent
    assert sum(isinstance(f, PiiLogFilter) for f in logger.handlers[0].filters) == 1
    logger.info("customer %s wrote from %s about id %s", PHONE, EMAIL, VALID_ID)
    logger.info(f"plain f-string with {PHONE}")
    try:
        raise ValueError(f"bad card {CARD}")
    except ValueError:
        logger.exception("refund failed for %s", EMAIL)
    out = buffer.getvalue()
    for raw in (PHONE, EMAIL, VALID_ID, CARD):
        assert raw not in out
    assert "customer [PHONE_1] wrote from [EMAIL_1] about id [ID_CARD_1]" in out
    assert "bad card [BANK_CARD_1]" in out  # the traceback too
    assert "ValueError" in out


def test_root_logger_handlers_get_the_filter():
    root = logging.getLogger()
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers = [handler]  # leave pytest's own capture handlers alone
    root.setLevel(logging.INFO)
    try:
        install_pii_log_filter()
        logging.getLogger("kefu.test.pii.child").warning("call me at %s", PHONE)
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)
    assert buffer.getvalue().strip() == "call me at [PHONE_1]"
