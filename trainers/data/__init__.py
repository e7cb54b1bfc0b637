"""Training data: Parquet shards + a JSON manifest at a local path, file:// or s3:// URI, streamed through Arrow.

    ds = open_dataset("s3://bucket/digits")            # or builtin:digits, a path, file://...
    stream = ds.stream(batch_size=64, seed=0)          # seeded two-level shuffle, DDP shares, exact resume
    held = ds.stream(64, 0, resident_bytes=2**29, device="cuda")  # same batches, data set held on the device
    x, y = stream.next_batch()                         # float32 in model range; int64 labels or None
"""
from trainers.data.dataset import Dataset, open_dataset
from trainers.data.errors import DataError
from trainers.data.importer import import_dataset
from trainers.data.info import DataInfo
from trainers.data.resident import ResidentStream
from trainers.data.stream import BatchStream

__all__ = ["BatchStream", "DataError", "DataInfo", "Dataset", "ResidentStream", "import_dataset", "open_dataset"]
