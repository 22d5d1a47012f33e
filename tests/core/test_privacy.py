from wenzheng.core import envelope
from wenzheng.core.privacy import contains_pii, mask_text, pseudonym


def test_numbers_and_names_are_masked():
    text = "我叫刘建华，电话13907971234，身份证36070219900101123X，座机0797-8123456，我是王女士"
    out = mask_text(text, names=["刘建华"])
    assert "13907971234" not in out and "139****1234" in out
    assert "36070219900101123X" not in out
    assert "8123456" not in out
    assert "刘建华" not in out and "刘**" in out
    assert not contains_pii(out)


def test_pseudonym_is_stable_keyed_and_not_the_handle():
    a = pseudonym(b"k1", "hotline", "13907971234")
    assert a == pseudonym(b"k1", "hotline", "13907971234")
    assert a != pseudonym(b"k2", "hotline", "13907971234")
    assert "1390797" not in a


def test_masked_envelope_drops_pii_and_keeps_chinese():
    env = envelope.make(channel="hotline", account="12345", source_id="c1", text="我叫张三丰，手机13800138000，路灯坏了",
                        posted_at=envelope.now(), pii={"caller_name": "张三丰", "caller_number": "13800138000"})
    out = envelope.masked(env, {"topic": "wz.intake", "partition": 0, "offset": 7})
    assert "pii" not in out and out["raw_ref"]["offset"] == 7
    assert "张三丰" not in out["text"] and "13800138000" not in envelope.encode(out).decode()
    assert "路灯坏了" in envelope.encode(out).decode("utf-8")  # UTF-8, not \\u escapes


def test_place_names_after_a_name_cue_are_not_masked():
    from wenzheng.core.privacy import protect

    assert mask_text("我是石角岭下村的") == "我是石**下村的"  # 石角岭 looks like a name…
    protect(["瑞金", "叶坪乡", "石角岭下村"])
    assert mask_text("我是石角岭下村的") == "我是石角岭下村的"  # …until the city says it is a place
    assert mask_text("我是瑞金叶坪乡的村民") == "我是瑞金叶坪乡的村民"
    assert mask_text("我是刘建华") == "我是刘**"


def test_full_width_and_grouped_numbers_are_masked_too():
    out = mask_text("手机號碼：１３９－０７９７－１２３４，身份证３６０７０２１９８５０１０１１２３４。")
    assert out == "手机號碼：139****1234，身份证360702************。"  # Chinese punctuation kept
    out = mask_text("身份证号是360702 19850101 1234，电话 139 0797 1234")
    assert "19850101" not in out and "0797" not in out
    assert contains_pii("电话１３９０７９７１２３４") and not contains_pii(out)
