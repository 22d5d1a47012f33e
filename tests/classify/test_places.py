"""Villages and communities in place resolution (the county and township cases are in
test_model.py): a name one county has decides, a name several share is never guessed."""

from __future__ import annotations

import pickle

import pytest

from wenzheng.classify.places import PlaceResolver
from wenzheng.config import load
from wenzheng.config.schema import Village


@pytest.fixture(scope="module")
def settings():
    return load().settings


@pytest.fixture(scope="module")
def resolver(settings):
    return PlaceResolver(settings)


@pytest.fixture(scope="module")
def without_villages(settings):
    return PlaceResolver(settings, villages=False)


@pytest.mark.parametrize(("text", "code", "name"), [
    ("我们腊长村的路灯坏了好几天了", "360702", "腊长村"),            # one county has a 腊长村
    ("腊长村委会门口的垃圾没人清运", "360702", "腊长村"),            # … its committee's name starts so
    ("我家住在西津路居委会，楼下天天有人烧垃圾", "360702", "西津路居委会"),
    ("西津路社区的路灯不亮", "360702", "西津路社区"),
    ("腊长三组的水渠堵了", "360702", "腊长"),                      # a short name before a 组
])
def test_a_village_one_county_has_resolves_to_it(resolver, text, code, name):
    assert resolver.resolve(text) == (code, name)


@pytest.mark.parametrize("text", [
    "我们莲塘村的路坏了好几天了",          # twelve counties have a 莲塘村
    "莲塘村委会门口的垃圾没人清运",
    "腊长的路灯坏了",                    # a short name counts only before a 组 or a "there"
    "反映一下杨村委会有人在河道里采砂",    # 一下 + 杨村, not 下杨村 (a village of 赣县区)
    "南外村的自来水停了",                # 兴国县's 南外村, or a village of 章贡区's 南外街道
])
def test_a_village_name_that_could_be_elsewhere_is_not_guessed(resolver, text):
    assert resolver.resolve(text) == ("unknown", None)


@pytest.mark.parametrize(("text", "code"), [
    ("田村镇莲塘村的路坏了", "360704"),    # the township decides, as it always did
    ("田村莲塘村的路坏了", "360704"),      # its short name right before the village: 赣县区's 莲塘村
    ("鹅公莲塘村修路", "360728"),
    ("于都县莲塘村的路坏了", "360731"),    # the county decides
    ("想咨询一下杨村卫生院", "360783"),    # 杨村(镇) of 龙南市, not 下杨村
])
def test_a_shared_village_resolves_with_its_township_or_county(resolver, text, code):
    assert resolver.resolve(text)[0] == code


def test_township_resolution_is_unchanged(settings, resolver, without_villages):
    """Every township by its full and short names, in the forms people write them; only
    ``<short name>村`` may change, since that is also a village's name."""
    templates = ["{}的垃圾没人清运", "我们{}那边停电了", "{}附近占道经营", "想咨询一下{}卫生院", "{}中学门口堵车"]
    changed = []
    for j in settings.gazetteer:
        for t in j.townships:
            for name in (t.name, *t.aliases):
                for text in (x.format(name) for x in templates):
                    if resolver.resolve(text) != without_villages.resolve(text):
                        changed.append(text)
    assert changed == []


def test_short_name_and_village_form_never_move_a_township_to_another_county(settings, resolver):
    for j in settings.gazetteer:
        for t in j.townships:
            for name in t.aliases:
                assert resolver.resolve(f"{name}村的路坏了")[0] in (j.code, "unknown"), name


def test_renamed_village_keeps_its_old_name(settings):
    jurisdictions = list(settings.gazetteer)
    i = next(i for i, j in enumerate(jurisdictions) if j.code == "360732")
    old = Village(code="360732999201", name="新合村", aliases=["老测试村"])
    jurisdictions[i] = jurisdictions[i].model_copy(update={"villages": [*jurisdictions[i].villages, old]})
    r = PlaceResolver(settings.model_copy(update={"gazetteer": jurisdictions}))
    assert r.resolve("老测试村的桥塌了") == ("360732", "老测试村")


def test_villages_are_no_jieba_words_and_the_resolver_pickles(resolver, without_villages):
    assert resolver.words() == without_villages.words()
    again = pickle.loads(pickle.dumps(resolver))
    assert again.resolve("我们腊长村的路灯坏了") == ("360702", "腊长村")
    assert again.resolve("田村莲塘村的路坏了")[0] == "360704"


def test_a_resolver_pickled_before_villages_still_resolves(without_villages):
    state = {k: v for k, v in without_villages.__dict__.items() if k not in ("_starts", "near")}
    old = PlaceResolver.__new__(PlaceResolver)
    old.__dict__.update(state)
    assert old.resolve("南康区唐江镇的路灯坏了") == ("360703", "南康区")
