"""How people type Chinese addresses, folded to one form for matching (no database, no web).

A caller says 「十二號三座二单元」, a clerk types 「１２号３幢２」, the address book holds
「浙江省某市某区江滨路12号3栋2单元」. :func:`normalise` maps all three to the same text, so that
trigram search (``pg_trgm``, see ``grids/addresses.py``) compares like with like. The same
function builds the book's ``norm`` column and the query, so every rule holds on both sides.

Rules, in order:

1. Unicode NFKC: full-width digits, letters and punctuation become half-width (１２Ａ → 12A).
2. Lower case; traditional forms that addresses use become simplified (號 → 号, 棟 → 栋,
   單 → 单, 樓 → 楼, 區 → 区, 縣 → 县, 鎮 → 镇, ...).
3. Spaces and punctuation go (they carry no meaning in an address); ``#`` after a number
   means a building (3#楼, 3# → 3栋).
4. Chinese numerals become digits: 十二 → 12, 一百零五 → 105, 二十 → 20, 一二三 → 123 (digit by
   digit when no 十/百/千 is present), 两 → 2.
5. Buildings: 幢, 座, 栋, 号楼 (after a house number's 号), 楼 right after a number → 栋.
6. A bare number at the end after a building is its unit: 3栋2 → 3栋2单元; 单元 is kept.
7. Leading administrative prefixes are dropped: province (…省, …自治区), cities (…市, …自治州,
   …地区, …盟), and one county/district (…区, …县, …旗), since callers leave them out. Street
   (街道/镇/乡) and community names stay: they tell two roads of the same name apart.

:func:`parts` reads the numbers (house, building, unit, room) out of a normalised address, for
re-ranking candidates whose text is close but whose numbers differ.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["chinese_to_int", "normalise", "numbers", "parts"]

_TRAD = str.maketrans({
    "號": "号", "棟": "栋", "單": "单", "樓": "楼", "區": "区", "縣": "县", "鎮": "镇",
    "鄉": "乡", "門": "门", "層": "层", "莊": "庄", "東": "东", "蘭": "兰", "興": "兴",
    "華": "华", "濱": "滨", "園": "园", "場": "场", "廣": "广", "橋": "桥", "灣": "湾",
    "壹": "一", "貳": "二", "叁": "三", "參": "三", "肆": "四", "伍": "五", "陸": "六",
    "柒": "七", "捌": "八", "玖": "九", "拾": "十", "佰": "百", "仟": "千", "兩": "两",
    "〇": "零", "○": "零",
})
_DIGIT = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
          "八": 8, "九": 9}
_UNIT = {"十": 10, "百": 100, "千": 1000}
_NUMERAL_RUN = re.compile(r"[零一二两三四五六七八九十百千]+")
# Whitespace and punctuation (ASCII after NFKC, and the CJK marks NFKC keeps).
_NOISE = re.compile(r"[\s\-_,.;:!?'\"()\[\]{}<>/\\|·、，。；：！？“”‘’（）【】《》〈〉「」『』~`@$%^&*+=]+")
_HASH_BUILDING = re.compile(r"(\d+)#楼?")
_BUILDING = re.compile(r"(?<=\d)(?:幢|座|栋|楼)")
_HAO_LOU = re.compile(r"(号)(\d+)号楼")  # 12号3号楼: the second 号 is the building's
_TRAILING_UNIT = re.compile(r"(\d+栋)(\d+)$")
_PREFIX_TOKEN = r"[^\d省市区县旗州盟路街道巷弄号栋单元室村组社镇乡]{1,8}?"
_PROVINCE = re.compile(rf"^{_PREFIX_TOKEN}(?:省|自治区|特别行政区)")
_CITY = re.compile(rf"^{_PREFIX_TOKEN}(?:自治州|地区|市|盟)")
_COUNTY = re.compile(rf"^{_PREFIX_TOKEN}(?:区|县|旗)")
_NUMBER_PARTS = {"house": re.compile(r"(\d+)号(?!楼)"), "building": re.compile(r"(\d+)栋"),
                 "unit": re.compile(r"(\d+)单元"), "room": re.compile(r"(\d+)室")}
_DIGITS = re.compile(r"\d+")


def chinese_to_int(numeral: str) -> int:
    """The value of a run of Chinese numerals.

    Examples
    --------
    >>> chinese_to_int("十二"), chinese_to_int("一百零五"), chinese_to_int("二十")
    (12, 105, 20)
    >>> chinese_to_int("十"), chinese_to_int("一二三"), chinese_to_int("两千零一")
    (10, 123, 2001)
    >>> chinese_to_int("三百一十"), chinese_to_int("零五")
    (310, 5)
    """
    if not any(c in _UNIT for c in numeral):  # 一二三 read digit by digit, as on a door plate
        return int("".join(str(_DIGIT[c]) for c in numeral))
    total = current = 0
    for c in numeral:
        if c in _DIGIT:
            current = _DIGIT[c]
        else:
            total += (current or 1) * _UNIT[c]  # 十二: an implied 一 before 十
            current = 0
    return total + current


def _numerals(text: str) -> str:
    return _NUMERAL_RUN.sub(lambda m: str(chinese_to_int(m.group(0))), text)


def _drop_prefixes(text: str) -> str:
    for pattern, repeat in ((_PROVINCE, False), (_CITY, True), (_COUNTY, False)):
        while True:
            m = pattern.match(text)
            # a token that is all of the rest is the place itself, not a prefix of it
            if m is None or m.end() == len(text) or text[:m.end()].endswith(("社区", "小区")):
                break
            text = text[m.end():]
            if not repeat:
                break
    return text


def normalise(text: str) -> str:
    """The matching form of an address (see the module's rules).

    Examples
    --------
    >>> normalise("浙江省金华市某某市稠城街道江滨社区江滨路12号3幢2单元")
    '稠城街道江滨社区江滨路12号3栋2单元'
    >>> normalise("江滨路十二號三座二单元")
    '江滨路12号3栋2单元'
    >>> normalise("江滨路１２号３幢２")
    '江滨路12号3栋2单元'
    >>> normalise("  江滨路 一百零五 号 ")
    '江滨路105号'
    >>> normalise("江滨路12号3号楼201室"), normalise("江滨路12号3#楼")
    ('江滨路12号3栋201室', '江滨路12号3栋')
    >>> normalise("某某县城关镇大同村三组15号")
    '城关镇大同村3组15号'
    >>> normalise("朝阳区")  # a prefix that is the whole text stays
    '朝阳区'
    >>> normalise("")
    ''
    """
    s = unicodedata.normalize("NFKC", text).lower().translate(_TRAD)
    s = _HASH_BUILDING.sub(r"\1栋", s)
    s = _NOISE.sub("", s)
    s = _numerals(s)
    s = _HAO_LOU.sub(r"\1\2栋", s)
    s = _BUILDING.sub("栋", s)
    s = _TRAILING_UNIT.sub(r"\1\2单元", s)
    return _drop_prefixes(s)


def parts(norm: str) -> dict[str, str]:
    """The numbered parts of a normalised address: house (号), building (栋), unit, room.

    Examples
    --------
    >>> parts("稠城街道江滨社区江滨路12号3栋2单元")
    {'house': '12', 'building': '3', 'unit': '2'}
    >>> parts("城关镇大同村3组15号")
    {'house': '15'}
    """
    out = {}
    for name, pattern in _NUMBER_PARTS.items():
        m = pattern.search(norm)
        if m:
            out[name] = m.group(1)
    return out


def numbers(norm: str) -> list[str]:
    """Every number in a normalised address, in order (for comparing two addresses' numbers).

    >>> numbers("城关镇大同村3组15号")
    ['3', '15']
    """
    return _DIGITS.findall(norm)
