"""The generated stubs match the .proto: regenerate into a temporary folder and compare."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
GENERATED = ("augserve_pb2.py", "augserve_pb2.pyi", "augserve_pb2_grpc.py")


def test_stubs_are_fresh(tmp_path):
    command = [sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "protos"), f"--python_out={tmp_path}",
               f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}", str(ROOT / "protos/augserve/v1/augserve.proto")]
    subprocess.run(command, check=True, timeout=120)
    for name in GENERATED:
        fresh = (tmp_path / "augserve/v1" / name).read_text()
        committed = (ROOT / "augserve/v1" / name).read_text()
        assert fresh == committed, f"augserve/v1/{name} is stale: run `make protos`"
