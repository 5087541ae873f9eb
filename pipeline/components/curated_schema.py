"""ImportSchemaGen whose cache key covers the curated schema's content.

TFX's ImportSchemaGen keys its cache on the file's path only, so an edited
schema (a reviewed change to a domain or a drift threshold) would be ignored on
an existing store until a --no-cache run. This adds the content's hash as a
parameter, which TFX's executor ignores and the cache key does not.
"""
import hashlib
import pathlib

from tfx import types
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.base import base_component
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter


class CuratedSchemaGenSpec(standard_component_specs.ImportSchemaGenSpec):
    PARAMETERS = {**standard_component_specs.ImportSchemaGenSpec.PARAMETERS,
                  "content_sha256": ExecutionParameter(type=str)}


class CuratedSchemaGen(ImportSchemaGen):
    SPEC_CLASS = CuratedSchemaGenSpec

    def __init__(self, schema_file: str, executor_path: str | None = None):
        """`executor_path`: where the executor reads the schema when it runs on
        another machine (the image, on Kubeflow); the hash is of `schema_file` here."""
        spec = CuratedSchemaGenSpec(
            schema_file=executor_path or schema_file,
            content_sha256=hashlib.sha256(pathlib.Path(schema_file).read_bytes()).hexdigest(),
            schema=types.Channel(type=standard_artifacts.Schema))
        base_component.BaseComponent.__init__(self, spec=spec)
