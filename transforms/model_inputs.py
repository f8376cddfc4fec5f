"""Model inputs on disk: TFRecord (tf.train.Example) and Parquet (a binary column), both readable
back into identical uint16 arrays. Written by `mammobeam preprocess`; read by the demo model's
training script.

Each record carries: sop_instance_uid, exam_id, accession_key, laterality, view, site, manufacturer,
preprocessing_version, height, width and `pixels` (raw little-endian uint16 bytes, row-major).
"""

from __future__ import annotations

import glob
from typing import Iterator

import numpy as np
import pyarrow as pa

from mammobeam.schemas.records import PreprocessedImage

TEXT_FIELDS = ("sop_instance_uid", "exam_id", "accession_key", "laterality", "view", "site",
               "manufacturer", "preprocessing_version")
ARROW_SCHEMA = pa.schema([*(pa.field(name, pa.string()) for name in TEXT_FIELDS),
                          pa.field("height", pa.int32()), pa.field("width", pa.int32()),
                          pa.field("pixels", pa.binary())])


def as_row(image: PreprocessedImage) -> dict:
    r = image.record
    pixels = np.ascontiguousarray(image.pixels, dtype="<u2")
    return {"sop_instance_uid": r.sop_instance_uid, "exam_id": r.exam_id, "accession_key": r.accession_key,
            "laterality": r.laterality, "view": r.view, "site": r.site, "manufacturer": r.manufacturer,
            "preprocessing_version": image.preprocessing_version, "height": int(pixels.shape[0]),
            "width": int(pixels.shape[1]), "pixels": pixels.tobytes()}


def pixels_of(row: dict) -> np.ndarray:
    return np.frombuffer(row["pixels"], dtype="<u2").reshape(row["height"], row["width"]).astype(np.uint16)


def to_example_bytes(image: PreprocessedImage) -> bytes:
    import tensorflow as tf
    row = as_row(image)
    feature = {name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[(row[name] or "").encode()]))
               for name in TEXT_FIELDS}
    feature["height"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[row["height"]]))
    feature["width"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[row["width"]]))
    feature["pixels"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[row["pixels"]]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def from_example_bytes(data: bytes) -> dict:
    import tensorflow as tf
    example = tf.train.Example.FromString(data)
    f = example.features.feature
    row = {name: f[name].bytes_list.value[0].decode() or None for name in TEXT_FIELDS}
    row.update(height=int(f["height"].int64_list.value[0]), width=int(f["width"].int64_list.value[0]),
               pixels=f["pixels"].bytes_list.value[0])
    return row


def read_tfrecords(pattern: str) -> Iterator[dict]:
    import tensorflow as tf
    for path in sorted(glob.glob(pattern)):
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            yield from_example_bytes(record)


def read_parquet(pattern: str) -> Iterator[dict]:
    import pyarrow.parquet as pq
    for path in sorted(glob.glob(pattern)):
        table = pq.read_table(path)
        yield from table.to_pylist()
