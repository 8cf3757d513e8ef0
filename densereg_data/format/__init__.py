"""The shard format (docs/FORMAT.md): schema, writer, reader, verify/info, template facts.

numpy + h5py + json only; both halves of densereg read and write shards through here.
"""

from densereg_data.format.files import atomic_write_bytes, dumps_json, sha256_file  # noqa: F401
from densereg_data.format.index import ShardIndex  # noqa: F401
from densereg_data.format.reader import (ShardReader, check_shard_schema, open_shard_file, open_shards,  # noqa: F401
                                         read_split)
from densereg_data.format.schema import (COMPRESSIONS, CONFIG, DENSE, FORMAT, FORMAT_VERSION, INDEX,  # noqa: F401
                                         SCHEMA, SHARD_RE, SKIPPED, TEMPLATE, TEMPLATE_ATTRS, TEMPLATE_SCHEMA,
                                         TMP_PREFIX, sample_schema, shard_name)
from densereg_data.format.template_facts import TemplateFacts, read_template_facts, uv_lookup  # noqa: F401
from densereg_data.format.verify import format_info, info, verify  # noqa: F401
from densereg_data.format.writer import ShardRecord, ShardWriter, write_index, write_template  # noqa: F401
