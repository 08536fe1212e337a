"""A small KServe v2 client written from the protocol text (JSON body, and
Triton's binary tensor extension), independent of tern's codec: requests are
built and responses decoded here with json, struct and numpy only.

Binary form: the body is the JSON header followed by the raw bytes of every
input whose "parameters" carry "binary_data_size", in input order; the
header length travels in the Inference-Header-Content-Length HTTP header.
BYTES elements are a 4-byte little-endian length followed by the bytes.
"""
import json
import struct

import numpy as np

from servemodels import DATATYPES

NP_TO_V2 = {np.dtype(v[0]).str: k for k, v in DATATYPES.items() if k != "BYTES"}


def v2_datatype(a):
    if a.dtype.kind in "OSU":
        return "BYTES"
    return NP_TO_V2[a.dtype.str]


def np_dtype(datatype):
    return DATATYPES[datatype][0]


def json_data(a):
    """Flat JSON-able list of an array's elements."""
    flat = a.reshape(-1)
    if a.dtype.kind in "OSU":
        return [e.decode() if isinstance(e, bytes) else str(e) for e in flat]
    if a.dtype == np.bool_:
        return [bool(e) for e in flat]
    if a.dtype.kind in "iu":
        return [int(e) for e in flat]
    return [float(e) for e in flat]


def raw_bytes(a):
    """Binary tensor data: little-endian elements, or length-prefixed BYTES."""
    if a.dtype.kind in "OSU":
        out = bytearray()
        for e in a.reshape(-1):
            b = e if isinstance(e, bytes) else str(e).encode()
            out += struct.pack("<I", len(b)) + b
        return bytes(out)
    return np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()


def request(inputs, binary_inputs=False, outputs=None, binary_outputs=None, binary_output_default=False,
            rid=None, parameters=None):
    """Builds a request. inputs: {name: ndarray}. binary_inputs: True, False or
    a set of names sent in binary. outputs: list of names requested (None =
    all). binary_outputs: set of requested output names asked in binary.
    Returns (body bytes, headers dict)."""
    header = {}
    if rid is not None:
        header["id"] = rid
    params = dict(parameters or {})
    if binary_output_default:
        params["binary_data_output"] = True
    if params:
        header["parameters"] = params
    header["inputs"] = []
    tail = b""
    for name, a in inputs.items():
        a = np.asarray(a)
        entry = {"name": name, "shape": list(a.shape), "datatype": v2_datatype(a)}
        binary = binary_inputs is True or (isinstance(binary_inputs, (set, list)) and name in binary_inputs)
        if binary:
            raw = raw_bytes(a)
            entry["parameters"] = {"binary_data_size": len(raw)}
            tail += raw
        else:
            entry["data"] = json_data(a)
        header["inputs"].append(entry)
    if outputs is not None:
        header["outputs"] = []
        for name in outputs:
            o = {"name": name}
            if binary_outputs and name in binary_outputs:
                o["parameters"] = {"binary_data": True}
            header["outputs"].append(o)
    hjson = json.dumps(header).encode()
    if tail or binary_inputs:
        return hjson + tail, {"Inference-Header-Content-Length": str(len(hjson)),
                              "Content-Type": "application/octet-stream"}
    return hjson, {"Content-Type": "application/json"}


def decode_bytes_tensor(raw, count):
    out, off = [], 0
    for _ in range(count):
        (n,) = struct.unpack_from("<I", raw, off)
        off += 4
        out.append(raw[off:off + n])
        off += n
    assert off == len(raw), f"BYTES tensor: {len(raw) - off} trailing bytes"
    return np.array(out, dtype=object)


def decode(resp):
    """Decodes a 200 response into (header dict, {name: ndarray}, {name: was_binary})."""
    body = resp.content
    hl = resp.headers.get("Inference-Header-Content-Length")
    if hl is None:
        header, tail = json.loads(body), b""
    else:
        hl = int(hl)
        header, tail = json.loads(body[:hl]), body[hl:]
    arrays, binary, off = {}, {}, 0
    for o in header["outputs"]:
        shape = [int(d) for d in o["shape"]]
        count = int(np.prod(shape)) if shape else 1
        size = (o.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            assert hl is not None, "binary output without Inference-Header-Content-Length"
            raw = tail[off:off + size]
            assert len(raw) == size, f"output {o['name']}: binary data cut short"
            off += size
            if o["datatype"] == "BYTES":
                a = decode_bytes_tensor(raw, count)
            else:
                a = np.frombuffer(raw, dtype=np.dtype(np_dtype(o["datatype"])).newbyteorder("<"))
            binary[o["name"]] = True
        else:
            assert "data" in o, f"output {o['name']}: neither data nor binary_data_size"
            data = o["data"]
            if o["datatype"] == "BYTES":
                a = np.array([d.encode() if isinstance(d, str) else bytes(d) for d in data], dtype=object)
            else:
                a = np.array(data, dtype=np_dtype(o["datatype"]))
            binary[o["name"]] = False
        assert a.size == count, f"output {o['name']}: {a.size} elements for shape {shape}"
        arrays[o["name"]] = a.reshape(shape)
    assert off == len(tail), f"{len(tail) - off} bytes after the last binary output"
    return header, arrays, binary


def error_of(resp):
    """The message of a {"error": "..."} response (fails if the body is not that)."""
    try:
        j = resp.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON: {resp.status_code} {resp.text!r}")
    assert isinstance(j, dict) and isinstance(j.get("error"), str) and j["error"], \
        f"error body is not {{\"error\": \"...\"}}: {resp.text!r}"
    return j["error"]
