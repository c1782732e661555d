from services.nlu.text import detect_language, mask_pii, normalize


def test_mask_and_unmask_round_trip():
    text = "订单KF2026110100299，手机13812345678，邮箱 li.lei@example.com，身份证11010519491231002X"
    masked = mask_pii(text)
    assert "13812345678" not in masked.text
    assert "li.lei@example.com" not in masked.text
    assert "11010519491231002X" not in masked.text
    assert "KF2026110100299" in masked.text  # order ids are not personal data
    assert {s.type for s in masked.spans} == {"phone", "email", "id_card"}
    assert masked.unmask() == text


def test_repeated_kinds_get_numbered_placeholders():
    masked = mask_pii("call 13812345678 or 13987654321")
    assert masked.text == "call [PHONE_1] or [PHONE_2]"


def test_normalize_full_width_and_language():
    assert normalize("ＡＢＣ　１２３") == "ABC 123"
    assert detect_language("你们的退货政策是什么？") == "zh"
    assert detect_language("What is your return policy?") == "en"
    assert detect_language("我的order还没到") == "zh"
