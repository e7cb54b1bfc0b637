"""Training data: Parquet shards + a JSON manifest at a local path, file:// or s3:// URI, streamed through Arrow.

Rooms, each importing only those below it (no import circles): fs.py (the one URI -> filesystem resolver, used by
results storage too; atomic writes), manifest.py, layout.py (schema and decoding), shards.py, writer.py, sources/
(what imports read: file formats and the built-ins), importer.py, builtins.py (built-ins materialised in the
cache), plan.py, producer.py, readahead.py, stream.py (StreamOptions, BatchStream), resident.py, dataset.py.

    ds = open_dataset("s3://bucket/digits")            # or builtin:digits, a path, file://...
    stream = ds.stream(batch_size=64, seed=0)          # seeded two-level shuffle, DDP shares, exact resume
    held = ds.stream(batch_size=64, seed=0, resident_bytes=2**29, device="cuda")  # same batches, held on the device
    stream = ds.stream(StreamOptions.from_config(cfg.data, seed=cfg.train.seed))  # from a job's data section
    x, y = stream.next_batch()                         # float32 in model range; int64 labels or None
"""
from trainers.data.dataset import Dataset, open_dataset
from trainers.data.errors import DataError
from trainers.data.importer import import_dataset
from trainers.data.info import DataInfo
from trainers.data.resident import ResidentStream
from trainers.data.stream import BatchStream, StreamOptions

__all__ = ["BatchStream", "DataError", "DataInfo", "Dataset", "ResidentStream", "StreamOptions", "import_dataset", "open_dataset"]
