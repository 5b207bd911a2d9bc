"""Declares a node's parameter table with descriptors and keeps its typed settings.

Every parameter is declared from the node's settings class (``parameters.py``) with a
``ParameterDescriptor``: its description, type, ``FloatingPointRange``/``IntegerRange`` and
``read_only`` when a change needs a restart, so ``ros2 param describe`` tells a robot
builder what each one is. Values are taken as users write them: ``-p temperature:=1`` or
``presentation_delay_ms: 300`` in a params file is an integer where a number is declared,
and ``-p source:=0`` an integer where text is; each is accepted as the declared type
(declared with dynamic typing first, checked and converted by ``paramspec.coerce``, then
fixed to its static type). A value that cannot be used raises ``ParameterError`` naming
the parameter, which ``spin.run_node`` prints as one line before exiting non-zero.

At run time a set of a read-only parameter is refused by rclpy with its reason; a set of
a dynamic one is converted the same way, checked against the table, and handed to the
node's ``on_change`` before it is accepted, so it takes effect or is refused with a reason.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter

from ..errors import MoshifaceError
from .paramspec import ParameterError, ParamSpec, coerce, settings_from, table, updated

S = TypeVar("S")

_TYPES = {bool: Parameter.Type.BOOL, int: Parameter.Type.INTEGER, float: Parameter.Type.DOUBLE,
          str: Parameter.Type.STRING}


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """What ``ros2 param describe`` shows for ``spec``."""
    described = ParameterDescriptor(name=spec.name, type=_TYPES[spec.kind].value, description=spec.description,
                                    additional_constraints=spec.constraints, read_only=spec.read_only)
    if spec.low is not None and spec.kind is float:
        described.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high),
                                                             step=0.0)]
    elif spec.low is not None and spec.kind is int:
        described.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
    return described


def _declare(node: Node, spec: ParamSpec):
    """Declares one parameter and returns its value as the declared type."""
    loose = ParameterDescriptor(dynamic_typing=True, description=spec.description)
    try:
        value = node.declare_parameter(spec.name, spec.default, loose).value
    except ParameterException as exc:
        raise ParameterError(spec.name, str(exc)) from None
    value = coerce(spec, value)
    typed = Parameter(spec.name, _TYPES[spec.kind], value)
    try:
        node.set_descriptor(spec.name, descriptor(spec), typed.get_parameter_value())
    except ParameterException as exc:
        raise ParameterError(spec.name, str(exc)) from None
    return value


class NodeParameters(Generic[S]):
    """A node's parameters, declared from its table; ``settings`` is always the current,
    typed and checked view of them."""

    def __init__(self, node: Node, settings: type[S], on_change: Callable[[S], None] | None = None) -> None:
        self._specs = {spec.name: spec for spec in table(settings)}
        values = {spec.name: _declare(node, spec) for spec in self._specs.values()}
        self.settings: S = settings_from(settings, values)
        self._on_change = on_change
        node.add_pre_set_parameters_callback(self._convert)
        node.add_on_set_parameters_callback(self._accept)

    def _convert(self, parameters: list[Parameter]) -> list[Parameter]:
        """Integers where a number is declared (``ros2 param set ... 300``) become numbers."""
        converted = []
        for parameter in parameters:
            spec = self._specs.get(parameter.name)
            if spec is not None and spec.kind in (float, str) and parameter.type_ in (
                    Parameter.Type.INTEGER, Parameter.Type.DOUBLE):
                try:
                    parameter = Parameter(parameter.name, _TYPES[spec.kind], coerce(spec, parameter.value))
                except ParameterError:
                    pass  # left as it is: the descriptor refuses it with rclpy's reason
            converted.append(parameter)
        return converted

    def _accept(self, parameters: list[Parameter]) -> SetParametersResult:
        try:
            candidate = updated(self.settings, {p.name: p.value for p in parameters})
            if self._on_change is not None:
                self._on_change(candidate)
        except MoshifaceError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.settings = candidate
        return SetParametersResult(successful=True)
