"""Masked patient names (serving/privacy.py): Chinese names and DICOM PN groups never show a given name."""

from serving.privacy import mask_name


def test_chinese_names_keep_only_the_first_character():
    assert mask_name("张三") == "张*"
    assert mask_name("张^三") == "张*"  # the PN separator must not expose the given name
    assert mask_name("欧阳^娜娜") == "欧***"


def test_alphabetic_and_ideographic_groups_are_masked_each():
    assert mask_name("Zhang^San=张^三") == "Z**** S**=张*"
    assert mask_name("Zhang^San") == "Z**** S**"
    assert mask_name(None) is None
