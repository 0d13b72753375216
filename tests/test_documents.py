"""Conditions read the probed document, only the document: a JSON body or stdout of
``null``, ``[]``, ``""`` or ``0`` is a document like any other, never opsgate's own fields."""

from __future__ import annotations

import pytest

from opsgate.model import CommandCheck, HttpCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check

from support.http_target import StaticTarget


@pytest.mark.parametrize("stdout", ["null", "[]", '""', "0", "{}"])
def test_command_stdout_that_is_an_empty_document_fails_a_length_condition(stdout):
    item = CommandCheck(name="json-out", argv=["printf", "%s", stdout], expect=["length(@) > 0"])
    result = run_check(item, ProbeContext())
    assert result.status == "fail", result.message


def test_http_body_null_fails_a_length_condition():
    with StaticTarget({"/null": None}) as target:
        result = run_check(HttpCheck(name="null-body", url=target.base + "/null", expect=["length(@) > 0"]), ProbeContext())
    assert result.status == "fail", result.message


def test_http_body_with_content_still_passes():
    with StaticTarget({"/list": [1, 2]}) as target:
        result = run_check(HttpCheck(name="list-body", url=target.base + "/list", expect=["length(@) > 0"]), ProbeContext())
    assert result.status == "pass", result.message
