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


def test_compatible_names_stay_importable_from_text():
    from services.nlu.text import ORDER_ID, MaskedText, PiiMatch

    assert [m.group(0) for m in ORDER_ID.finditer("订单KF2026110100299和kf2026110100300")] == [
        "KF2026110100299",
        "kf2026110100300",
    ]
    assert not ORDER_ID.search("KF20261101002991")  # 14 digits: not an order id
    masked = mask_pii("手机13812345678")
    assert isinstance(masked, MaskedText) and isinstance(masked.spans[0], PiiMatch)


def test_normalize_folds_traditional_and_colloquial_forms():
    assert normalize("這個咋回事兒？") == "这个怎么回事?"
    assert normalize("pls   help\n me") == "please help me"
