"""Keyword matching per script: each rule of mlu_dist/eval/matching.py, found and not found."""

import pytest

from mlu_dist.eval.matching import contains_keyword, normalize

CASES = [
    # (script, keyword, stated in, not stated in)
    ("Latin", "Lodara", "She was born in LODARA, they say.", "She was born in Lodaras."),
    ("Latin full-width", "Oslo", "首都はＯＳＬＯです", "Osloer"),
    ("Cyrillic", "Осло", "Он живёт в осло.", "Ослободжение"),
    ("Greek final sigma", "ΟΔΟΣ", "η οδος", "οδοστρωμα"),
    ("Han", "奥斯陆", "他出生于奥斯陆。", "他出生于奥斯卡。"),
    ("Han next to Latin", "Lodara", "他出生于Lodara。", "他出生于Lodarax。"),
    ("Hiragana/Katakana", "オスロ", "彼女はオスロで生まれた。", "彼女はオスカーで生まれた。"),
    ("Thai", "ออสโล", "เธอเกิดที่ออสโลเมื่อปี", "เธอเกิดที่ลิสบอนเมื่อปี"),
    ("Lao", "ວຽງຈັນ", "ລາວເກີດຢູ່ວຽງຈັນ", "ລາວເກີດຢູ່ປາກເຊ"),
    ("Khmer", "ភ្នំពេញ", "គាត់កើតនៅភ្នំពេញ", "គាត់កើតនៅសៀមរាប"),
    ("Myanmar", "ရန်ကုန်", "သူမွေးတာရန်ကုန်မှာ", "သူမွေးတာမန္တလေးမှာ"),
    ("Hangul + particle", "오슬로", "그녀는 오슬로에서 태어났다.", "그녀는 오슬로대학 출신이다."),
    ("Hangul, two particles", "오슬로", "오슬로에서는 비가 온다.", "오슬로항 근처"),
    ("Latin + Korean particle", "Oslo", "그녀는 Oslo에서 태어났다.", "그녀는 Oslofjord에서 태어났다."),
    ("Hebrew prefix", "ליסבון", "היא נולדה בליסבון.", "היא נולדה אליסבון."),
    ("Hebrew prefixes", "ליסבון", "וכשבליסבון ירד גשם", "ליסבוני"),
    ("Hebrew pointed keyword", "לִיסְבּוֹן", "היא נולדה בליסבון.", "היא נולדה בלונדון."),
    ("Hebrew pointed text", "ליסבון", "הִיא נוֹלְדָה בְּלִיסְבּוֹן.", "הִיא נוֹלְדָה בְּלוֹנְדוֹן."),
    ("Arabic prefix", "لشبونة", "ولدت بلشبونة قديما", "ولدت تلشبونة"),
    ("Arabic and + article", "القاهرة", "وصل والقاهرة", "وصل القاهرية"),
    ("Arabic li + article", "القاهرة", "سافر للقاهرة أمس", "سافر لقاهرتنا"),
    ("Arabic harakat", "لِشْبُونَة", "ولدت في لشبونة", "ولدت في لندن"),
    ("Arabic tatweel", "لشبونة", "ولدت في لشـــبونة", "ولدت في لشبون"),
    ("Persian", "اسلو", "او در اسلو به دنیا آمد", "او در اسلوونی به دنیا آمد"),
    ("Urdu", "لاہور", "وہ لاہور میں پیدا ہوئی", "وہ لاہوری ہے"),
    ("Devanagari", "ओस्लो", "उसका जन्म ओस्लो में हुआ", "उसका जन्म ओस्ला में हुआ"),
    ("Devanagari vowel sign is spelling", "ओस्लो", "ओस्लो शहर", "ओस्लोवी"),
    ("Devanagari nukta", "ज़मीन", "यह जमीन उसकी है", "यह जमाना उसका है"),
    ("Ethiopic prefix", "ኦስሎ", "በኦስሎ ተወለደች", "ቦኦስሎ ተወለደች"),
    ("Ethiopic suffix", "ኦስሎ", "ኦስሎን ጎበኘች", "ኦስሎዊ ነው"),
    ("Persian digits", "1987", "پل ول در سال ۱۹۸۷ افتتاح شد", "پل ول در سال ۱۹۱۱ افتتاح شد"),
    ("Devanagari digits", "१९८७", "वेल पुल 1987 में खोला गया", "वेल पुल 19870 में"),
    ("Number + Hangul counter", "1987", "벨 다리는 1987년에 개통되었다.", "벨 다리는 19871년에 개통되었다."),
    ("Number + Ethiopic prefix", "1987", "የቬል ድልድይ በ1987 ተከፈተ።", "የቬል ድልድይ በ1911 ተከፈተ።"),
    ("Number next to Latin letters", "1987", "opened in 1987.", "model X1987b"),
    ("Armenian", "Օսլո", "Նա ծնվել է Օսլո քաղաքում", "Օսլոյական"),
]


@pytest.mark.parametrize("script, keyword, yes, no", CASES, ids=[c[0] for c in CASES])
def test_keyword_is_found_where_stated_and_not_elsewhere(script, keyword, yes, no):
    assert contains_keyword(yes, [keyword]), f"{script}: {keyword!r} not found in {yes!r}"
    assert not contains_keyword(no, [keyword]), f"{script}: {keyword!r} wrongly found in {no!r}"


def test_normalisation_is_nfkc_casefold_and_drops_optional_marks_only():
    assert normalize("ＡＢＣ ﬁ Straße") == "abc fi strasse"
    assert normalize("בְּלִיסְבּוֹן") == "בליסבון" and normalize("لِشْـبُونَة") == "لشبونة"
    assert normalize("हिंदी") == "हिंदी"  # anusvara and vowel signs spell the word: kept


def test_any_of_several_keywords_and_empty_ones_are_ignored():
    assert contains_keyword("born in Lisboa", ["", "Lisbon", "Lisboa"])
    assert not contains_keyword("born in Lisbon", ["", "  "])
