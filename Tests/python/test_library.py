"""The loader (segloss._library): where it looks, what it reports when nothing loads, and
that its ctypes declarations and status codes agree with include/segloss.h."""
import ctypes
import ctypes.util
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

import segloss
from segloss import SegLossError, Status, _library

REPO = pathlib.Path(__file__).resolve().parents[2]
HEADER = REPO / "include" / "segloss.h"
PACKAGE = pathlib.Path(segloss.__file__).resolve().parent
LOADED = pathlib.Path(_library.library_path).resolve()


# --- where the library is looked for -----------------------------------------------------------


def test_candidate_paths_in_order():
    paths = _library.candidate_paths({"SEGLOSS_LIBRARY": "/somewhere/libsegloss.so"})
    assert paths == [
        "/somewhere/libsegloss.so",
        str(PACKAGE / "libsegloss.so"),
        os.path.normpath(PACKAGE / ".." / ".." / ".." / ".build" / "release" / "libsegloss.so"),
    ]
    assert paths[2] == str(REPO / ".build" / "release" / "libsegloss.so")


def test_candidate_paths_without_the_environment_variable():
    assert _library.candidate_paths({}) == _library.candidate_paths({"SEGLOSS_LIBRARY": ""})[-2:]
    assert len(_library.candidate_paths({})) == 2


def test_nothing_loads_lists_every_path_and_why(tmp_path):
    not_a_library = tmp_path / "libsegloss.so"
    not_a_library.write_text("not an ELF file")
    missing = tmp_path / "missing" / "libsegloss.so"
    not_segloss = ctypes.util.find_library("m") or "libm.so.6"  # loads, but exports no segloss_*
    with pytest.raises(ImportError) as raised:
        _library.load_library([str(missing), str(not_a_library), not_segloss])
    message = str(raised.value)
    lines = message.splitlines()
    assert f"  {missing}: " in message and f"  {not_a_library}: " in message and f"  {not_segloss}: " in message
    assert len([line for line in lines if line.startswith("  ")]) == 3
    assert "segloss_version_number" in message  # why libm was no good: the missing symbol
    assert "SEGLOSS_LIBRARY" in message


def test_the_first_loadable_path_wins(tmp_path):
    library, path = _library.load_library([str(tmp_path / "missing.so"), str(LOADED)])
    assert path == str(LOADED)
    assert library.segloss_version_number() == segloss._library.library.segloss_version_number()


def test_an_incompatible_version_is_rejected(monkeypatch):
    monkeypatch.setattr(_library, "EXPECTED_MINOR", _library.EXPECTED_MINOR + 1)
    with pytest.raises(ImportError, match=r"needs 0\.2\.x") as raised:
        _library.load_library([str(LOADED)])
    assert f"library version {segloss.__version__}" in str(raised.value)


def run_python(code, env_changes, pythonpath):
    env = {key: value for key, value in os.environ.items() if key != "SEGLOSS_LIBRARY"}
    env.update(env_changes)
    env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def copy_package(root, with_library=False):
    """A copy of the segloss package at root/a/b/python/segloss, where ../../../.build holds
    no library; returns the directory to put on PYTHONPATH."""
    python_dir = root / "a" / "b" / "python"
    shutil.copytree(PACKAGE, python_dir / "segloss", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    if with_library:
        shutil.copy(LOADED, python_dir / "segloss" / "libsegloss.so")
    return python_dir


def test_import_fails_with_every_path_tried(tmp_path):
    python_dir = copy_package(tmp_path)
    missing = tmp_path / "nowhere" / "libsegloss.so"
    result = run_python("import segloss", {"SEGLOSS_LIBRARY": str(missing)}, python_dir)
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    for path in (missing, python_dir / "segloss" / "libsegloss.so", tmp_path / "a" / ".build" / "release" / "libsegloss.so"):
        assert f"  {path}: " in result.stderr, result.stderr


def test_the_environment_variable_comes_first(tmp_path):
    python_dir = copy_package(tmp_path, with_library=True)
    elsewhere = tmp_path / "elsewhere" / "libsegloss.so"
    elsewhere.parent.mkdir()
    shutil.copy(LOADED, elsewhere)
    code = "import segloss, segloss._library as l; print(l.library_path); print(segloss.bce_loss([0.5], [1]))"
    result = run_python(code, {"SEGLOSS_LIBRARY": str(elsewhere)}, python_dir)
    assert result.returncode == 0, result.stderr
    path, loss = result.stdout.split()
    assert path == str(elsewhere) and float(loss) == pytest.approx(0.6931472)


def test_the_library_beside_the_package(tmp_path):
    python_dir = copy_package(tmp_path, with_library=True)
    result = run_python("import segloss._library as l; print(l.library_path)", {}, python_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(python_dir / "segloss" / "libsegloss.so")


def test_environment_variables_of_the_library(tmp_path):
    code = "import segloss; print(segloss.get_num_threads(), segloss.kernel_name())"
    result = run_python(code, {"SEGLOSS_NUM_THREADS": "3", "SEGLOSS_KERNEL": "baseline"}, PACKAGE.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "baseline"]


# --- declarations against the header -----------------------------------------------------------

C_TYPES = {
    "const float *": {ctypes.c_void_p},
    "const void *": {ctypes.c_void_p},
    "void *": {ctypes.c_void_p},
    "const unsigned char *": {ctypes.c_void_p},
    "double": {ctypes.c_double},
    "double *": {ctypes.c_void_p, ctypes.POINTER(ctypes.c_double)},
    "size_t *": {ctypes.POINTER(ctypes.c_size_t)},
    "segloss_options *": {ctypes.POINTER(_library.OptionsStruct)},
    "const segloss_options *": {ctypes.POINTER(_library.OptionsStruct)},
    "const segloss_shape *": {ctypes.POINTER(_library.ShapeStruct)},
    "const segloss_slice *": {ctypes.POINTER(_library.SliceStruct)},
    "const double *": {ctypes.c_void_p},
    "float *": {ctypes.c_void_p, ctypes.POINTER(ctypes.c_float)},
    "size_t": {ctypes.c_size_t},
    "float": {ctypes.c_float},
    "int": {ctypes.c_int},
    "segloss_status": {ctypes.c_int},
    "unsigned": {ctypes.c_uint},
    "const char *": {ctypes.c_char_p},
    "void": {None},
}


def header_prototypes():
    """{name: (return type, [parameter types])} of every SEGLOSS_API function."""
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    prototypes = {}
    for match in re.finditer(r"SEGLOSS_API\s+([^;(]*?)\s*\b(segloss_\w+)\s*\(([^)]*)\)\s*;", text):
        returns, name, parameters = match.groups()
        types = []
        for parameter in parameters.split(","):
            parameter = " ".join(parameter.split())
            if parameter != "void":
                types.append(normalized(re.sub(r"\b\w+$", "", parameter)))  # drop the name
        prototypes[name] = (normalized(returns), types)
    return prototypes


def normalized(c_type):
    return re.sub(r"\s*\*", " *", c_type).strip()


# The general API's functions: declared only when the library has them (declare_general).
GENERAL_FUNCTIONS = {"segloss_options_init", "segloss_segment_count", "segloss_forward",
                     "segloss_backward", "segloss_forward_backward"}
# The split phase's: declared only when the library has them (declare_split_phase).
SPLIT_PHASE_FUNCTIONS = {"segloss_sums_length", "segloss_compute_sums", "segloss_loss_from_sums",
                         "segloss_backward_from_sums"}


def test_every_header_function_is_declared_as_in_the_header():
    prototypes = header_prototypes()
    assert len(prototypes) == 22, sorted(prototypes)
    assert GENERAL_FUNCTIONS | SPLIT_PHASE_FUNCTIONS <= set(prototypes)
    for name, (returns, parameters) in prototypes.items():
        if name in GENERAL_FUNCTIONS and _library.general_api_missing is not None:
            continue  # an older library: checked once it has them
        if name in SPLIT_PHASE_FUNCTIONS and _library.split_phase_missing is not None:
            continue
        function = getattr(_library.library, name)
        assert function.restype in C_TYPES[returns], name
        assert function.argtypes is not None and len(function.argtypes) == len(parameters), name
        for argtype, parameter in zip(function.argtypes, parameters):
            assert argtype in C_TYPES[parameter], (name, parameter, argtype)
        if returns == "segloss_status":
            assert function.errcheck is not None, name


def test_status_values_match_the_header():
    text = HEADER.read_text()
    header = {name: int(value) for name, value in re.findall(r"\bSEGLOSS_(OK|ERROR_\w+)\s*=\s*(\d+)", text)}
    assert header == {status.name: status.value for status in Status}


def test_every_status_has_the_librarys_message():
    library = _library.library
    messages = {status: library.segloss_status_string(status).decode() for status in Status}
    assert messages[Status.OK] == "success"
    assert len(set(messages.values())) == len(Status)
    assert library.segloss_status_string(99).decode() == "unknown segloss status"
    assert library.segloss_status_string(-1).decode() == "unknown segloss status"


def test_an_unknown_status_still_raises(tmp_path):
    library, _ = _library.load_library([str(LOADED)])
    function = library.segloss_bce_forward
    with pytest.raises(SegLossError) as raised:
        function.errcheck(99, function, ())
    assert raised.value.status == 99 and type(raised.value.status) is int
    assert raised.value.message == "unknown segloss status"
    assert raised.value.function == "segloss_bce_forward"
    assert function.errcheck(0, function, ()) == 0


def test_segloss_error():
    error = SegLossError(Status.ERROR_EMPTY_INPUT, "message", "segloss_f")
    assert isinstance(error, ValueError)
    assert (error.status, error.message, error.function) == (2, "message", "segloss_f")
    assert str(error) == "segloss_f: message (status 2, ERROR_EMPTY_INPUT)"


def test_segloss_torch_without_torch_is_a_clear_import_error():
    code = (
        "import sys; sys.modules['torch'] = None  # as if torch were not installed\n"
        "import segloss; print(segloss.bce_loss([0.5], [1]))\n"
        "try:\n"
        "    import segloss.torch\n"
        "except ImportError as error:\n"
        "    print('ImportError:', error)\n")
    result = run_python(code, {}, PACKAGE.parent)
    assert result.returncode == 0, result.stderr
    assert "ImportError: segloss.torch needs PyTorch" in result.stdout
    assert "numpy API" in result.stdout
