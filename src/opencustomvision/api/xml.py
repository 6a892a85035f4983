"""XML request bodies and answers, with the spec's model names as elements.

Azure Custom Vision speaks XML in the shape .NET's DataContractSerializer
writes: the root element is the model's definition name, properties are
child elements named after their camelCase JSON names, lists are wrapped in
an element whose children are named after the item type, and dictionaries
are lists of ``<KeyValueOf…><Key/><Value/></KeyValueOf…>`` entries.

The codec is driven by the pydantic model classes: element names come from
the classes and their field aliases, and ``load_xml`` only builds a plain
dict/list structure of strings and hands it to pydantic, so type checking
happens in exactly one place.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import types
import uuid
from collections.abc import Mapping, Sequence, Set
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, overload
from xml.etree import ElementTree

import defusedxml.ElementTree as defused_etree
from defusedxml import DefusedXmlException
from pydantic import BaseModel, TypeAdapter

__all__ = [
    "XML_MEDIA_TYPES",
    "XmlBodyError",
    "dump_xml",
    "is_xml_content_type",
    "load_xml",
    "wants_xml",
    "xml_name",
]

XML_MEDIA_TYPES = ("application/xml", "text/xml")

ModelT = TypeVar("ModelT", bound=BaseModel)

_XSI_NAMESPACE = "http://www.w3.org/2001/XMLSchema-instance"

# Bounds recursion when a model refers to itself; real bodies are a few levels deep.
_MAX_READ_DEPTH = 64

# XML 1.0 cannot carry these characters at all, not even as character references.
_CHARACTERS_INVALID_IN_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_PRIMITIVE_NAMES: tuple[tuple[type, str], ...] = (
    # bool before int: bool is a subclass of int.
    (bool, "boolean"),
    (enum.IntEnum, "int"),
    (enum.Enum, "string"),
    (int, "int"),
    (float, "float"),
    (str, "string"),
    (uuid.UUID, "guid"),
    (dt.datetime, "dateTime"),
    (dt.date, "date"),
    (dt.time, "time"),
)


class XmlBodyError(ValueError):
    """An XML request body that is malformed, forbidden, or cannot be read."""


# ---------------------------------------------------------------------------
# Content negotiation


def is_xml_content_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type in XML_MEDIA_TYPES


def wants_xml(accept_header: str | None) -> bool:
    """True when Accept ranks XML strictly above JSON; ties and ``*/*`` go to JSON."""
    if not accept_header:
        return False
    ranges = _parse_accept(accept_header)
    json_quality = _quality_for("application/json", ranges)
    xml_quality = max(_quality_for(media_type, ranges) for media_type in XML_MEDIA_TYPES)
    return xml_quality > json_quality


def _parse_accept(accept_header: str) -> list[tuple[str, str, float]]:
    ranges: list[tuple[str, str, float]] = []
    for media_range in accept_header.split(","):
        media_type, *parameters = media_range.split(";")
        main_type, slash, sub_type = media_type.strip().lower().partition("/")
        if not slash or not main_type or not sub_type:
            continue
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
                if not 0.0 <= quality <= 1.0:  # also rejects nan
                    quality = 0.0
        ranges.append((main_type, sub_type, quality))
    return ranges


def _quality_for(media_type: str, ranges: list[tuple[str, str, float]]) -> float:
    # The most specific matching range decides (RFC 9110 §12.5.1).
    main_type, _, sub_type = media_type.partition("/")
    best_specificity = -1
    quality = 0.0
    for range_main, range_sub, range_quality in ranges:
        if range_main == main_type and range_sub == sub_type:
            specificity = 2
        elif range_main == main_type and range_sub == "*":
            specificity = 1
        elif range_main == "*" and range_sub == "*":
            specificity = 0
        else:
            continue
        if specificity > best_specificity:
            best_specificity, quality = specificity, range_quality
        elif specificity == best_specificity:
            quality = max(quality, range_quality)
    return quality


# ---------------------------------------------------------------------------
# Names


def xml_name(annotation: Any) -> str:
    """The element name DataContract gives a type: ``Tag``, ``ArrayOfTag``, ``int``, …

    Pass it as ``root`` to ``dump_xml`` for a list or dict answer that may be
    empty, since an empty value does not say what it would have held.
    """
    annotation = _strip_optional(_strip_annotated(annotation))
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return str(getattr(annotation, "__xml_name__", annotation.__name__))
    if _is_list_type(annotation):
        return "ArrayOf" + xml_name(_list_item_type(annotation))
    if _is_dict_type(annotation):
        key_type, value_type = _dict_item_types(annotation)
        return "ArrayOf" + _key_value_name(key_type, value_type)
    if origin is Literal:
        literal_types = {type(option) for option in get_args(annotation)}
        return xml_name(literal_types.pop()) if len(literal_types) == 1 else "anyType"
    if isinstance(annotation, type):
        for primitive, name in _PRIMITIVE_NAMES:
            if issubclass(annotation, primitive):
                return name
    return "anyType"


def _key_value_name(key_type: Any, value_type: Any) -> str:
    return "KeyValueOf" + xml_name(key_type) + xml_name(value_type)


# ---------------------------------------------------------------------------
# Writing


def dump_xml(
    value: BaseModel | Sequence[Any] | Mapping[Any, Any] | int | float | bool | str | None,
    *,
    root: str | None = None,
) -> bytes:
    """Serialize an answer as UTF-8 XML with a declaration.

    A model becomes ``<ModelName>``, a list of models ``<ArrayOfModelName>``,
    a bare int ``<int>``; ``root`` overrides the outer element name and is
    required for an empty list or dict.
    """
    root_name = root if root is not None else _root_name(value)
    element = ElementTree.Element(root_name)
    # A root value has no field annotation: item types are read from the items.
    _fill_element(element, value, Any)
    xml_bytes = ElementTree.tostring(element, encoding="utf-8", xml_declaration=True)
    # ElementTree writes a carriage return in text as is, and every parser turns
    # it into a newline; only a character reference survives the round trip.
    # Attribute values and names never hold one, so every \r here is text.
    return xml_bytes.replace(b"\r", b"&#13;")


def _root_name(value: Any) -> str:
    if value is None:
        return "anyType"
    if isinstance(value, BaseModel) or not isinstance(value, (Sequence, Mapping)) or isinstance(value, str):
        return xml_name(type(value))
    if not value:
        raise ValueError(
            "an empty list or dict does not say what it holds; "
            "pass root=xml_name(list[Model]) (or the dict type) to name the XML root"
        )
    if isinstance(value, Mapping):
        key, item = next(iter(value.items()))
        return "ArrayOf" + _key_value_name(type(key), type(item))
    return "ArrayOf" + xml_name(type(value[0]))


def _fill_element(element: ElementTree.Element, value: Any, annotation: Any) -> None:
    annotation = _strip_optional(_strip_annotated(annotation))
    if value is None:
        element.set("xmlns:i", _XSI_NAMESPACE)
        element.set("i:nil", "true")
    elif isinstance(value, BaseModel):
        _fill_model(element, value)
    elif isinstance(value, Mapping):
        key_type, value_type = _dict_item_types(annotation) if _is_dict_type(annotation) else (Any, Any)
        for key, item in value.items():
            entry_name = _key_value_name(_resolved_type(key_type, key), _resolved_type(value_type, item))
            entry = ElementTree.SubElement(element, entry_name)
            _fill_element(ElementTree.SubElement(entry, "Key"), key, key_type)
            _fill_element(ElementTree.SubElement(entry, "Value"), item, value_type)
    elif isinstance(value, (list, tuple, set, frozenset)):
        item_type = _list_item_type(annotation) if _is_list_type(annotation) else Any
        for item in value:
            item_element = ElementTree.SubElement(element, xml_name(_resolved_type(item_type, item)))
            _fill_element(item_element, item, item_type)
    else:
        element.text = _format_scalar(value)


def _fill_model(element: ElementTree.Element, model: BaseModel) -> None:
    for field_name, field in type(model).model_fields.items():
        if field.exclude:
            continue
        field_value = getattr(model, field_name)
        if field_value is None:
            continue
        element_name = field.serialization_alias or field.alias or field_name
        _fill_element(ElementTree.SubElement(element, element_name), field_value, field.annotation)


def _resolved_type(annotation: Any, value: Any) -> Any:
    """The annotation when it names one type, otherwise the value's own type."""
    annotation = _strip_optional(_strip_annotated(annotation))
    if annotation is Any or _is_union(annotation) or isinstance(annotation, TypeVar):
        return type(value)
    return annotation


def _format_scalar(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return _format_scalar(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "INF" if value > 0 else "-INF"
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            # The database hands back naive timestamps that are UTC by convention.
            value = value.replace(tzinfo=dt.timezone.utc)
        text = value.astimezone(dt.timezone.utc).isoformat()
        return text.removesuffix("+00:00") + "Z"
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return _CHARACTERS_INVALID_IN_XML.sub("\ufffd", str(value))


# ---------------------------------------------------------------------------
# Reading


@overload
def load_xml(body: bytes, model: type[ModelT]) -> ModelT: ...
@overload
def load_xml(body: bytes, model: Any) -> Any: ...
def load_xml(body: bytes, model: Any) -> Any:
    """Parse an XML request body and validate it as ``model``.

    ``model`` is usually a pydantic class; any annotation pydantic can
    validate, such as ``dict[str, str]`` for UpdateImageMetadata, works too.
    The root element's name is not checked. Raises XmlBodyError for XML that
    cannot be read, and lets pydantic's ValidationError through for bad values.
    """
    try:
        root = defused_etree.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except ElementTree.ParseError as error:
        raise XmlBodyError(f"malformed XML: {error}") from error
    except DefusedXmlException as error:
        raise XmlBodyError(f"forbidden XML construct: {error!r}") from error
    except (LookupError, ValueError) as error:  # unknown or wrong encoding declaration
        raise XmlBodyError(f"unreadable XML: {error}") from error
    data = _read_element(root, model, depth=0)
    if isinstance(model, type) and issubclass(model, BaseModel):
        # XML carries only text, so lax conversion ("5" -> 5) is always wanted.
        return model.model_validate(data, strict=False)
    return TypeAdapter(model).validate_python(data, strict=False)


def _read_element(element: ElementTree.Element, annotation: Any, *, depth: int) -> Any:
    if depth > _MAX_READ_DEPTH:
        raise XmlBodyError(f"XML nested deeper than {_MAX_READ_DEPTH} levels")
    if _is_nil(element):
        return None
    annotation = _strip_annotated(annotation)
    if _is_union(annotation):
        annotation = _pick_union_member(element, annotation)
    if _is_structured(annotation) and len(element) == 0 and (element.text or "").strip():
        # Text where an object or a list belongs: let pydantic report the type error.
        return element.text
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _read_model(element, annotation, depth=depth)
    if _is_list_type(annotation):
        item_type = _list_item_type(annotation)
        return [_read_element(child, item_type, depth=depth + 1) for child in element]
    if _is_dict_type(annotation):
        key_type, value_type = _dict_item_types(annotation)
        return _read_dict(element, key_type, value_type, depth=depth)
    return _read_text(element, keep_whitespace=_is_text_type(annotation))


def _read_model(element: ElementTree.Element, model: type[BaseModel], *, depth: int) -> dict[str, Any]:
    fields_by_element_name: dict[str, tuple[str, Any]] = {}
    for field_name, field in model.model_fields.items():
        data_key = field.validation_alias if isinstance(field.validation_alias, str) else field.alias or field_name
        for name in (field_name, field.alias, field.validation_alias, field.serialization_alias):
            if isinstance(name, str):
                fields_by_element_name[name.lower()] = (data_key, field.annotation)
    data: dict[str, Any] = {}
    for child in element:
        match = fields_by_element_name.get(_local_name(child).lower())
        if match is None:
            continue  # unknown elements are ignored, like unknown JSON properties
        data_key, annotation = match
        data[data_key] = _read_element(child, annotation, depth=depth + 1)
    return data


def _read_dict(element: ElementTree.Element, key_type: Any, value_type: Any, *, depth: int) -> dict[Any, Any]:
    """Read ``<KeyValueOf…><Key>k</Key><Value>v</Value></…>`` entries or ``<k>v</k>``."""
    result: dict[Any, Any] = {}
    for entry in element:
        key_element = _child_named(entry, "key")
        if key_element is None:
            result[_local_name(entry)] = _read_element(entry, value_type, depth=depth + 1)
            continue
        value_element = _child_named(entry, "value")
        if value_element is None:
            raise XmlBodyError(f"<{_local_name(entry)}> has a <Key> but no <Value>")
        key = _read_element(key_element, key_type, depth=depth + 1)
        if key is None:
            raise XmlBodyError(f"<{_local_name(entry)}> has a nil <Key>")
        result[key] = _read_element(value_element, value_type, depth=depth + 1)
    return result


def _read_text(element: ElementTree.Element, *, keep_whitespace: bool) -> str:
    if len(element):
        raise XmlBodyError(f"<{_local_name(element)}> should hold a value, not child elements")
    text = element.text or ""
    # Indentation around numbers, ids and dates is layout; inside strings it is data.
    return text if keep_whitespace else text.strip()


def _pick_union_member(element: ElementTree.Element, annotation: Any) -> Any:
    members = [member for member in get_args(annotation) if member is not type(None)]
    if len(members) == 1:
        return members[0]
    if len(element):
        structured = [member for member in members if _is_structured(member)]
        return structured[0] if structured else Any
    if any(_is_text_type(member) for member in members):
        return str
    return Any


def _is_nil(element: ElementTree.Element) -> bool:
    for attribute_name, attribute_value in element.attrib.items():
        if _local_name_of(attribute_name) == "nil" and attribute_value.strip().lower() in ("true", "1"):
            return True
    return False


def _child_named(element: ElementTree.Element, lowercase_name: str) -> ElementTree.Element | None:
    for child in element:
        if _local_name(child).lower() == lowercase_name:
            return child
    return None


def _local_name(element: ElementTree.Element) -> str:
    return _local_name_of(element.tag)


def _local_name_of(qualified_name: str) -> str:
    # ElementTree spells namespaced names "{uri}local".
    return qualified_name.rpartition("}")[2]


# ---------------------------------------------------------------------------
# Annotations


def _strip_annotated(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _strip_optional(annotation: Any) -> Any:
    if _is_union(annotation):
        members = [member for member in get_args(annotation) if member is not type(None)]
        if len(members) == 1:
            return _strip_annotated(members[0])
    return annotation


def _container_origin(annotation: Any) -> Any:
    return get_origin(annotation) or annotation


def _is_list_type(annotation: Any) -> bool:
    origin = _container_origin(annotation)
    is_collection = isinstance(origin, type) and issubclass(origin, (Sequence, Set))
    return is_collection and not issubclass(origin, (str, bytes))


def _is_dict_type(annotation: Any) -> bool:
    origin = _container_origin(annotation)
    return isinstance(origin, type) and issubclass(origin, Mapping)


def _is_structured(annotation: Any) -> bool:
    annotation = _strip_annotated(annotation)
    is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return is_model or _is_list_type(annotation) or _is_dict_type(annotation)


def _is_text_type(annotation: Any) -> bool:
    return annotation is str


def _list_item_type(annotation: Any) -> Any:
    arguments = get_args(annotation)
    return arguments[0] if arguments else Any


def _dict_item_types(annotation: Any) -> tuple[Any, Any]:
    arguments = get_args(annotation)
    return (arguments[0], arguments[1]) if len(arguments) == 2 else (Any, Any)
