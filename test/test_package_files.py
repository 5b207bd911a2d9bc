"""Checks of the ROS 2 package files that can be checked without ROS.

Nothing here can run `colcon build`, so these tests run what colcon would run on our files
with the same tools: catkin_pkg on package.xml, and rosidl_adapter + rosidl_parser (Debian's
python3-rosidl, made importable by scripts/fetch_rosidl.sh, which `make test` runs) on every
msg/*.msg. The rest cross-checks CMakeLists.txt, the launch file, the parameter file and
the node launchers against each other and against the files on disk, so that none of them
can drift silently.
"""

import ast
import contextlib
import os
import py_compile
import re
import stat
import sys
from pathlib import Path

import pytest
import yaml
from catkin_pkg.package import parse_package

# Imported directly (no importorskip): a missing rosidl must fail the suite, not hide it.
from rosidl_adapter.msg import convert_msg_to_idl
from rosidl_adapter.parser import (
    BaseType,
    InvalidSpecification,
    InvalidValue,
    parse_message_file,
    parse_message_string,
    validate_field_types,
)
from rosidl_parser.definition import IdlLocator, Message
from rosidl_parser.parser import parse_idl_file

from moshiface_ros.nodes.parameters import MOSHIFACE_NODE, NODES

ROOT = Path(__file__).resolve().parents[1]
PKG = "moshiface_ros"
MSG_FILES = sorted((ROOT / "msg").glob("*.msg"))
LAUNCH_FILE = ROOT / "launch" / "moshiface.launch.py"
PARAMS_FILE = ROOT / "config" / "moshiface.yaml"

# Message types our definitions may use besides their own: what package.xml depends on.
EXTERNAL_MSG_TYPES = {"std_msgs/Header", "builtin_interfaces/Time", "builtin_interfaces/Duration"}

LAUNCH_ARGUMENTS = {
    "model": "tiny",
    "device": "auto",
    "params_file": None,  # the installed config/moshiface.yaml, computed at launch time
    "record": "false",
    "bag_dir": "",
}

NODE_PARAMETERS = MOSHIFACE_NODE  # what the node declares


# --------------------------------------------------------------------------- package.xml


@pytest.fixture(scope="module")
def package():
    pkg = parse_package(str(ROOT / "package.xml"))
    pkg.validate()  # raises InvalidPackage on any schema/format problem
    return pkg


def test_package_xml_is_a_valid_format3_ament_cmake_interface_package(package):
    assert package.name == PKG
    assert package.package_format == 3
    assert package.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in {g.name for g in package.member_of_groups}
    assert package.licenses == ["Apache-2.0"]
    assert package.maintainers, "package.xml needs a maintainer"


def test_package_xml_dependencies(package):
    buildtool = {d.name for d in package.buildtool_depends}
    build = {d.name for d in package.build_depends}
    execs = {d.name for d in package.exec_depends}
    tests = {d.name for d in package.test_depends}

    assert {"ament_cmake", "ament_cmake_python", "rosidl_default_generators"} <= buildtool
    # <depend> puts a key in build and exec depends.
    assert {"std_msgs", "builtin_interfaces"} <= build & execs
    assert {"rclpy", "rosidl_default_runtime", "launch", "launch_ros", "ros2bag",
            "rosbag2_storage_mcap", "python3-numpy", "python3-yaml", "sensor_msgs", "diagnostic_msgs",
            "trajectory_msgs", "visualization_msgs"} <= execs
    assert {"ament_cmake_pytest", "python3-pytest"} <= tests
    # pip-only dependencies are not rosdep keys: rosdep install would fail on them.
    for name in ("torch", "moshi", "soxr", "rosbags", "python3-torch", "python3-moshi"):
        assert name not in build | execs | tests | buildtool


def test_versions_agree(package):
    """package.xml, setup.py and moshiface_ros.__version__ carry one version."""
    setup_call = next(
        node for node in ast.walk(ast.parse((ROOT / "setup.py").read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup"
    )
    setup_version = next(
        ast.literal_eval(kw.value) for kw in setup_call.keywords if kw.arg == "version"
    )
    assert setup_version == package.version

    init = ast.parse((ROOT / PKG / "__init__.py").read_text())
    versions = [
        ast.literal_eval(node.value) for node in init.body
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", None) == "__version__" for t in node.targets)
    ]
    assert versions == [package.version]


def test_license_file_is_apache_2():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


# --------------------------------------------------------------------------- messages


def test_there_are_messages():
    names = {p.stem for p in MSG_FILES}
    assert {"AudioChunk", "FaceFrame", "FaceTokens", "BlendshapeWeights", "DialogueText"} <= names


@pytest.mark.parametrize("msg_file", MSG_FILES, ids=lambda p: p.name)
def test_msg_passes_rosidl_adapter(msg_file):
    spec = parse_message_file(PKG, str(msg_file))
    assert spec.base_type.pkg_name == PKG
    assert spec.base_type.type == msg_file.stem
    assert spec.fields, f"{msg_file.name} has no fields"
    # Every non-primitive field type must be one of ours or a declared dependency's.
    known = [BaseType(f"{PKG}/{p.stem}") for p in MSG_FILES]
    known += [BaseType(t) for t in sorted(EXTERNAL_MSG_TYPES)]
    validate_field_types(spec, known)
    # Every message is stamped (DESIGN: every message carries header.stamp).
    assert str(spec.fields[0].type) == "std_msgs/Header" and spec.fields[0].name == "header"


@contextlib.contextmanager
def _empy_stdout():
    """empy 3 (rosidl's template engine) replaces sys.stdout with its own proxy once per
    process and fails ("interpreter stdout proxy lost") when pytest's capture swaps it out
    between tests. Give each conversion a proxy over the current stdout."""
    import em

    saved = sys.stdout
    sys.stdout = em.ProxyFile(saved)
    try:
        yield
    finally:
        sys.stdout = saved


@pytest.mark.parametrize("msg_file", MSG_FILES, ids=lambda p: p.name)
def test_msg_converts_to_idl_and_parses(msg_file, tmp_path):
    """The pipeline rosidl_generate_interfaces runs: .msg -> .idl -> rosidl_parser."""
    out_dir = tmp_path / PKG / "msg"
    out_dir.mkdir(parents=True)
    with _empy_stdout():
        idl = convert_msg_to_idl(ROOT, PKG, Path("msg") / msg_file.name, out_dir)
    assert idl.exists()

    idl_file = parse_idl_file(IdlLocator(tmp_path, idl.relative_to(tmp_path)))
    messages = idl_file.content.get_elements_of_type(Message)
    assert len(messages) == 1
    structure = messages[0].structure
    assert structure.namespaced_type.namespaces == [PKG, "msg"]
    assert structure.namespaced_type.name == msg_file.stem

    spec = parse_message_file(PKG, str(msg_file))
    assert [m.name for m in structure.members] == [f.name for f in spec.fields]


@pytest.mark.parametrize(
    "text, error, match",
    [
        # field names must be lower_snake_case
        ("int32 BadName\n", NameError, "invalid field name"),
        # no such primitive type (taken for a message name, which must be CamelCase)
        ("float128 value\n", InvalidSpecification, "invalid message name"),
        ("std_msgs/header header\n", InvalidSpecification, "invalid message name"),
        ("uint8 x\nuint8 x\n", ValueError, "duplicate names"),
        ("int32\n", InvalidSpecification, "int32"),
        ("int32 x abc\n", InvalidValue, "can not be converted"),
    ],
    ids=["bad-field-name", "unknown-type", "bad-type-name", "duplicate-field", "missing-name",
         "bad-default"],
)
def test_rosidl_adapter_rejects_bad_messages(text, error, match):
    """The checks above have teeth: rosidl_adapter refuses what colcon would refuse."""
    with pytest.raises(error, match=match):
        parse_message_string(PKG, "Bad", text)


def test_unknown_message_type_is_rejected():
    spec = parse_message_string(PKG, "Bad", "std_msgs/Heder header\n")
    known = [BaseType(t) for t in sorted(EXTERNAL_MSG_TYPES)]
    with pytest.raises(InvalidSpecification):
        validate_field_types(spec, known)


# --------------------------------------------------------------------------- CMakeLists.txt


def _cmake_commands(text):
    """(name, [args]) for each command in a CMake file (enough of CMake for our file)."""
    text = re.sub(r"#[^\n]*", "", text)
    commands = []
    for match in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)", text):
        args = re.findall(r'"[^"]*"|[^\s"]+', match.group(2))
        commands.append((match.group(1).lower(), [a.strip('"') for a in args]))
    return commands


@pytest.fixture(scope="module")
def cmake():
    commands = _cmake_commands((ROOT / "CMakeLists.txt").read_text())
    variables = {"PROJECT_NAME": PKG}

    def expand(args):
        out = []
        for arg in args:
            whole = re.fullmatch(r"\$\{(\w+)\}", arg)
            if whole and isinstance(variables.get(whole.group(1)), list):
                out += variables[whole.group(1)]
            else:
                out.append(re.sub(r"\$\{(\w+)\}", lambda m: str(variables.get(m.group(1), m.group(0))), arg))
        return out

    expanded = []
    for name, args in commands:
        args = expand(args)
        if name == "set" and args:
            variables[args[0]] = args[1:]
        expanded.append((name, args))
    return expanded


def _calls(cmake, name):
    return [args for cmd, args in cmake if cmd == name]


def test_cmake_basics(cmake):
    assert _calls(cmake, "project") == [[PKG]]
    found = {args[0] for args in _calls(cmake, "find_package")}
    assert {"ament_cmake", "ament_cmake_python", "rosidl_default_generators", "std_msgs"} <= found
    assert _calls(cmake, "ament_package"), "ament_package() missing"
    # rosidl_python #141: a second ament_python_install_package(${PROJECT_NAME}) breaks.
    assert not _calls(cmake, "ament_python_install_package")


def test_cmake_generates_exactly_the_msg_files(cmake):
    (args,) = _calls(cmake, "rosidl_generate_interfaces")
    assert args[0] == PKG
    listed = [a for a in args if a.endswith(".msg")]
    assert len(listed) == len(set(listed)), "a message is listed twice"
    assert sorted(listed) == [f"msg/{p.name}" for p in MSG_FILES]
    assert "DEPENDENCIES" in args and "std_msgs" in args[args.index("DEPENDENCIES"):]


def _installs(cmake, kind):
    for args in _calls(cmake, "install"):
        if args and args[0] == kind:
            end = args.index("DESTINATION")
            yield args[1:end], args[end + 1]


def test_cmake_installs_node_scripts_that_exist(cmake, tmp_path):
    programs = [(files, dest) for files, dest in _installs(cmake, "PROGRAMS")]
    assert programs, "no install(PROGRAMS ...) for the node executables"
    scripts = [f for files, dest in programs for f in files]
    assert all(dest == f"lib/{PKG}" for _, dest in programs)
    assert "scripts/moshiface_node" in scripts
    for script in scripts:
        path = ROOT / script
        assert path.is_file(), f"{script} is installed but does not exist"
        assert os.stat(path).st_mode & stat.S_IXUSR, f"{script} is not executable"
        assert path.read_text().startswith("#!/usr/bin/env python3\n")
        py_compile.compile(str(path), cfile=str(tmp_path / (path.name + ".pyc")), doraise=True)


def test_node_scripts_call_an_existing_node_module(cmake):
    scripts = [f for files, _ in _installs(cmake, "PROGRAMS") for f in files]
    for script in scripts:
        tree = ast.parse((ROOT / script).read_text())
        imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        targets = [n.module for n in imports if n.module and n.module.startswith(f"{PKG}.nodes.")]
        assert targets, f"{script} does not import a module of {PKG}.nodes"
        for module in targets:
            source = ROOT / (module.replace(".", "/") + ".py")
            assert source.is_file(), f"{script} runs {module}, which does not exist"
            defs = {n.name for n in ast.parse(source.read_text()).body if isinstance(n, ast.FunctionDef)}
            assert "main" in defs, f"{module} has no main()"


def test_cmake_installs_python_code_launch_and_config(cmake):
    directories = list(_installs(cmake, "DIRECTORY"))
    python = [dest for srcs, dest in directories if srcs[:1] == [f"{PKG}/"]]
    assert python == [f"${{PYTHON_INSTALL_DIR}}/{PKG}"]
    shared = {src for srcs, dest in directories if dest == f"share/{PKG}" for src in srcs}
    assert {"launch", "config"} <= shared
    for src in shared:
        assert (ROOT / src).is_dir()


def test_cmake_pytest_tests_exist(cmake):
    tests = _calls(cmake, "ament_add_pytest_test")
    assert tests, "no ament_add_pytest_test() in BUILD_TESTING"
    for args in tests:
        # ament_add_pytest_test fails at configure time when the path is missing.
        assert (ROOT / args[1]).is_file(), f"ament_add_pytest_test lists missing {args[1]}"


def test_python_package_cannot_shadow_generated_messages():
    """The generated moshiface_ros.msg is installed into our package directory."""
    assert not (ROOT / PKG / "msg").exists()
    assert not (ROOT / PKG / "msg.py").exists()
    init = ast.parse((ROOT / PKG / "__init__.py").read_text())
    for node in ast.walk(init):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith(PKG), \
                "moshiface_ros/__init__.py must not import its submodules"
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith(PKG) for a in node.names)


# --------------------------------------------------------------------------- launch file


def _declared_arguments(tree):
    declared = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DeclareLaunchArgument":
            name = ast.literal_eval(node.args[0])
            default = next((kw.value for kw in node.keywords if kw.arg == "default_value"), None)
            declared[name] = ast.literal_eval(default) if isinstance(default, ast.Constant) else default
    return declared


def test_launch_file_compiles_and_declares_its_arguments(cmake, tmp_path):
    py_compile.compile(str(LAUNCH_FILE), cfile=str(tmp_path / "launch.pyc"), doraise=True)
    tree = ast.parse(LAUNCH_FILE.read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description"
               for n in tree.body)

    declared = _declared_arguments(tree)
    assert set(declared) == set(LAUNCH_ARGUMENTS)
    for name, default in LAUNCH_ARGUMENTS.items():
        if default is not None:
            assert declared[name] == default, name

    # The node it starts is one the package installs.
    executables = {
        ast.literal_eval(kw.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Node"
        for kw in node.keywords if kw.arg == "executable"
    }
    installed = {Path(f).name for files, _ in _installs(cmake, "PROGRAMS") for f in files}
    assert executables and executables <= installed


def test_launch_description_with_ros():
    """Where ROS is installed (and this package with it), build the real description."""
    # launch_ros first: with the repository root on sys.path, our launch/ folder imports
    # as an (empty) namespace package named `launch`.
    pytest.importorskip("launch_ros")
    launch = pytest.importorskip("launch")
    assert hasattr(launch, "LaunchDescription")
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    from launch.actions import DeclareLaunchArgument
    import importlib.util

    try:
        get_package_share_directory(PKG)
    except PackageNotFoundError:
        pytest.skip(f"{PKG} is not installed in the ament index (run after colcon build)")

    spec = importlib.util.spec_from_file_location("moshiface_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    names = {e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert names == set(LAUNCH_ARGUMENTS)


# --------------------------------------------------------------------------- parameters


def test_parameter_file():
    data = yaml.safe_load(PARAMS_FILE.read_text())
    assert set(data) == {"moshiface_node"}
    assert set(data["moshiface_node"]) == {"ros__parameters"}
    params = data["moshiface_node"]["ros__parameters"]
    assert set(params) == set(NODE_PARAMETERS)
    for name, value in NODE_PARAMETERS.items():
        # ROS parameters are typed: 0.8 must stay a double, 42 an integer, true a bool.
        assert type(params[name]) is type(value) and params[name] == value, name


# Each node's parameter file: the nodes it configures.
NODE_CONFIG_FILES = {
    "moshiface.yaml": {"moshiface_node"},
    "audio.yaml": {"audio_capture", "audio_playback"},
    "face_tracker.yaml": {"face_tracker"},
    "retarget.yaml": {"retarget"},
    "web_head.yaml": {"web_head"},
}


@pytest.mark.parametrize("file_name", sorted(NODE_CONFIG_FILES))
def test_every_node_config_lists_exactly_its_parameters(file_name):
    data = yaml.safe_load((ROOT / "config" / file_name).read_text())
    assert set(data) == NODE_CONFIG_FILES[file_name]
    for node, section in data.items():
        assert set(section) == {"ros__parameters"}, node
        params, declared = section["ros__parameters"], NODES[node]
        assert set(params) == set(declared), node
        for name, value in declared.items():
            assert type(params[name]) is type(value) and params[name] == value, (node, name)


def test_every_node_has_a_config_file_and_a_launcher():
    assert set().union(*NODE_CONFIG_FILES.values()) == set(NODES)
    for node in NODES:
        assert (ROOT / "scripts" / node).exists(), node
        assert (ROOT / "moshiface_ros" / "nodes" / f"{node}.py").exists(), node


def test_launch_node_name_matches_parameter_file():
    tree = ast.parse(LAUNCH_FILE.read_text())
    names = {
        ast.literal_eval(kw.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Node"
        for kw in node.keywords if kw.arg == "name"
    }
    assert names == set(yaml.safe_load(PARAMS_FILE.read_text()))


# --------------------------------------------------------------------------- the whole robot, recording, ROS install

ROBOT_LAUNCH = ROOT / "launch" / "robot.launch.py"
ROBOT_ARGUMENTS = {"model", "device", "head", "camera", "flame_model", "teeth", "input_device", "output_device",
                   "echo_cancellation", "livelink", "livelink_host", "livelink_port", "presentation_delay_ms",
                   "record", "bag_dir", "web_head", "web_head_source"}


def _robot_arguments() -> dict[str, str | None]:
    """name -> default of robot.launch.py's ARGUMENTS table (None: computed at launch time)."""
    tree = ast.parse(ROBOT_LAUNCH.read_text())
    (table,) = [n.value for n in tree.body if isinstance(n, ast.Assign)
                and any(getattr(t, "id", None) == "ARGUMENTS" for t in n.targets)]
    rows = {}
    for row in table.elts:
        name, default = row.elts[0], row.elts[1]
        rows[ast.literal_eval(name)] = ast.literal_eval(default) if isinstance(default, ast.Constant) else default
    return rows


def test_every_launch_file_compiles(tmp_path):
    for path in sorted((ROOT / "launch").glob("*.launch.py")):
        py_compile.compile(str(path), cfile=str(tmp_path / (path.name + "c")), doraise=True)
        tree = ast.parse(path.read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body), path


def test_robot_launch_arguments_and_nodes(cmake):
    from moshiface_ros.constants import PRESENTATION_DELAY_MS

    rows = _robot_arguments()
    assert set(rows) == ROBOT_ARGUMENTS
    assert rows["model"] == "tiny" and rows["record"] == "false" and rows["livelink_port"] == "11111"
    # one delay for every presenting node, from the shared constant (not a second literal)
    assert not isinstance(rows["presentation_delay_ms"], str)
    assert "PRESENTATION_DELAY_MS" in ast.unparse(rows["presentation_delay_ms"]) and PRESENTATION_DELAY_MS == 300.0

    text = ROBOT_LAUNCH.read_text()
    started = set(re.findall(r'_node\(share, "(\w+)", "(\w+\.yaml)"', text))
    assert {node for node, _ in started} == {"audio_capture", "face_tracker", "moshiface_node", "audio_playback",
                                              "retarget", "web_head"}
    for node, config in started:
        assert node in NODE_CONFIG_FILES[config], (node, config)
    installed = {Path(f).name for files, _ in _installs(cmake, "PROGRAMS") for f in files}
    assert {node for node, _ in started} | {"recorder"} <= installed


def test_recording_is_one_launch_file_included_by_the_others():
    """moshiface.launch.py and robot.launch.py record through record.launch.py, which
    records the recorder node's topic list, and nothing names a topic no node publishes."""
    for name in ("moshiface.launch.py", "robot.launch.py"):
        text = (ROOT / "launch" / name).read_text()
        assert '"record.launch.py"' in text and "IfCondition(LaunchConfiguration(\"record\"))" in text, name
        tree = ast.parse(text)
        strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                   and n.value != ast.get_docstring(tree, clean=False)]
        assert not [s for s in strings if s.startswith("/moshiface/") or s == "bag"], name
    record = (ROOT / "launch" / "record.launch.py").read_text()
    assert "from moshiface_ros.nodes.recorder import RECORDED_TOPICS" in record
    assert '"ros2", "bag", "record", "-s", "mcap"' in record


def test_ros_requirements_are_pinned():
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "requirements" / "ros.txt").read_text().splitlines()]
    ros = [ln for ln in lines if ln.startswith("ros-jazzy-")]
    assert len(ros) >= 15
    assert all(re.fullmatch(r"ros-jazzy-[a-z0-9-]+(\[\w+\])?==[\d.]+", ln) for ln in ros), ros
    assert "ros-jazzy-rclpy[fastrtps]==7.1.6" in ros
    assert any(ln.startswith("numpy") and "<2" in ln for ln in lines)


def test_fast_dds_profile_is_installed_with_the_config():
    assert (ROOT / "config" / "fastdds_localhost.xml").is_file()
    setup = (ROOT / "scripts" / "ros_env.sh").read_text()
    assert "share/moshiface_ros/config/fastdds_localhost.xml" in setup
    assert "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST" in setup and "RMW_IMPLEMENTATION=rmw_fastrtps_cpp" in setup
