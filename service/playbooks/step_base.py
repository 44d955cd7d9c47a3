"""What every step shares: timing, retries, approval, and `with` blocks that take templates until rendered."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Annotated, ClassVar, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from service.playbooks.templating import Escape, is_template
from service.vocabulary.checked import RENDERED
from service.vocabulary.durations import Duration
from service.vocabulary.errors import GuardViolation, PermanentStepError

T = TypeVar("T")
__all__ = ["Duration"]  # steps import Duration from here; it is defined once in service.vocabulary.durations

StepId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
Approval = Literal["none", "required"]
Effect = Literal["read", "write"]


class Retry(BaseModel):
    """Bounded retries: `attempts` in total, `interval` before the second, growing by `backoff`."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(default=1, ge=1, le=20)
    interval: Duration = timedelta(seconds=1)
    backoff: float = Field(default=1.0, ge=1.0, le=10.0)


class Params(BaseModel):
    """Base of every `with` block: which fields take no templates, how templated values are escaped, and the
    blast radius a write with these parameters reports."""

    model_config = ConfigDict(extra="forbid")

    literal_fields: ClassVar[frozenset[str]] = frozenset()
    escapes: ClassVar[dict[str, Escape]] = {}

    def caps(self) -> list[str]:
        """The limits the playbook set on what this write may touch, as the approver reads them."""
        return []

    def most(self) -> int:
        """The most targets one call with these parameters may touch: its cap, or the one target it names."""
        return 1

    def touched(self, data: Mapping[str, JsonValue], targets: Sequence[str]) -> str:
        """How much a call with these parameters touched (or would touch), from its result."""
        return f"{len(targets)} target(s)"

    def blast_radius(self, data: Mapping[str, JsonValue], targets: Sequence[str]) -> str:
        return f"{self.touched(data, targets)}; cap: {', '.join(self.caps()) or 'one target'}"


def _template_until_rendered(value: str, info: ValidationInfo) -> str:
    # Before rendering a typed field may hold a template; after rendering, text where a typed value belongs is refused.
    if info.context and info.context.get("rendered"):  # RENDERED
        raise ValueError("expected a typed value here, got text")
    if not is_template(value):
        raise ValueError("expected a typed value or a {{ template }}")
    return value


Template = Annotated[str, AfterValidator(_template_until_rendered)]


P = TypeVar("P", bound=Params)


def parse_rendered(model: type[P], rendered: Mapping[str, JsonValue]) -> P:
    """A step's rendered parameters as their typed model: the parsers ran at load, so only the shapes are checked,
    and text where a typed value belongs (a template that rendered to a string) is refused."""
    try:
        return model.model_validate(rendered, context=RENDERED)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PermanentStepError(f"rendered parameters are invalid: {where}: {first['msg']}") from exc


def typed(value: T | str, what: str) -> T:
    """A templated field after rendering: its typed value, never text (the registry validated it so)."""
    if isinstance(value, str):
        raise GuardViolation(f"{what} was not rendered to a typed value; nothing was changed")
    return value


class StepBase(BaseModel):
    """Fields every step has."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    connection_type: ClassVar[str]
    default_approval: ClassVar[Approval] = "required"
    returns: ClassVar[str] = ""  # the result's fields, as docs/actions.md lists them
    dry_run_behaviour: ClassVar[str] = "runs"
    approval_rule: ClassVar[str] = ""  # where the default approval depends on the parameters
    effect_rule: ClassVar[str] = ""  # where reading or writing depends on the parameters

    id: StepId
    action: str
    description: str = ""
    connection: str = Field(min_length=1)
    when: str | None = Field(default=None, description="Expression; the step runs only when it is true.")
    timeout: Duration = timedelta(seconds=30)
    retry: Retry | None = None
    expect: str | None = Field(default=None, description="Expression the result must satisfy (retried).")

    @classmethod
    def effect_of(cls, params: Params) -> Effect:
        """Whether a call of this action with these parameters reads or writes."""
        return "read"

    @property
    def effect(self) -> Effect:
        return self.effect_of(self.params)

    def retries_safely(self, ledgers: Sequence[str]) -> bool:
        """Whether a retry after a lost worker can never apply a write twice (reads; marks, uids, request ids)."""
        return True

    def safe_default_approval(self) -> Approval:
        """The approval a write needs when the playbook does not say; destructive actions say `required`."""
        return self.default_approval

    @classmethod
    def action_name(cls) -> str:
        """The action this model is the step of: the single value of its `action` literal."""
        name: str = cls.model_fields["action"].annotation.__args__[0]  # type: ignore[union-attr]
        return name

    @classmethod
    def params_model(cls) -> type[Params]:
        """The model of this action's `with` block; every action declares it as the field `with_`."""
        model = cls.model_fields["with_"].annotation
        if not (isinstance(model, type) and issubclass(model, Params)):
            raise TypeError(f"{cls.__name__} declares no `with` parameters")
        return model

    @property
    def params(self) -> Params:
        """The step's `with` block, as written in the playbook (templates not rendered)."""
        params: Params = self.__dict__["with_"]
        return params


class ApprovalRule(BaseModel):
    """Approval that depends on the diagnosis: `required_if` is decided on the write's own dry-run, where
    `targets` is how many targets it would touch (besides alert, inputs and steps)."""

    model_config = ConfigDict(extra="forbid")

    required_if: str = Field(min_length=1, max_length=500, examples=["targets > 2"])


def approval_of(step: StepBase) -> Approval:
    """The approval a write needs: what the playbook says, else the action's safe default; a conditional one is
    `required` until its condition has been decided."""
    explicit = step.approval if isinstance(step, WriteStep) else None
    if isinstance(explicit, ApprovalRule):
        return "required"
    return explicit if explicit is not None else step.safe_default_approval()


def approval_rule_of(step: StepBase) -> str | None:
    """The `required_if` condition of a write, when its approval depends on the diagnosis."""
    explicit = step.approval if isinstance(step, WriteStep) else None
    return explicit.required_if if isinstance(explicit, ApprovalRule) else None


def approval_label(step: StepBase) -> str:
    """How the plan and the record show a write's approval."""
    rule = approval_rule_of(step)
    return f"required if {rule}" if rule else approval_of(step)


class WriteStep(StepBase):
    """A step that changes something: it may say `approval:` and always runs at most once per run."""

    approval: Approval | ApprovalRule | None = Field(
        default=None, description="none, required, or {required_if: <expression>} decided on this write's dry-run"
    )
    min_approvals: int | None = Field(default=None, ge=1, le=5, description="Raise the playbook's min_approvals.")
    for_each: str | None = Field(
        default=None, description="Expression giving a list; the step runs once per item, as `item` in templates."
    )
    max_items: int | None = Field(default=None, ge=1, le=1000, description="Required with for_each.")

    def each(self) -> tuple[str, int] | None:
        """The `for_each` expression and its cap, when the step runs once per item."""
        return (self.for_each, self.max_items) if self.for_each and self.max_items else None

    @model_validator(mode="after")
    def _for_each_is_capped(self) -> WriteStep:
        if self.for_each is not None and self.max_items is None:
            raise ValueError("for_each needs max_items: a write never runs over an uncapped list")
        return self

    @classmethod
    def effect_of(cls, params: Params) -> Effect:
        return "write"


class TargetRef(BaseModel):
    """A typed target taken from a diagnose result; extra fields of that result are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def bounded_targets(targets: Sequence[T], max_targets: int, what: str) -> Sequence[T]:
    """Refuse an empty target list (never read as "everything") and any list over the playbook's cap."""
    if not targets:
        raise GuardViolation(f"no {what} to act on: an empty target list is refused, never read as 'all'")
    if len(targets) > max_targets:
        raise GuardViolation(f"{len(targets)} {what} is over max_targets {max_targets}; nothing was changed")
    if len(set(targets)) != len(targets):
        raise GuardViolation(f"the {what} list names the same target twice")
    return targets


MaxTargets = Annotated[int, Field(ge=1, le=1000, description="Refuse to act on more targets than this.")]


class Capped(Params):
    """Parameters of a write over a list of typed targets, capped by `max_targets`."""

    max_targets: MaxTargets

    def caps(self) -> list[str]:
        return [f"max_targets {self.max_targets}"]

    def most(self) -> int:
        return self.max_targets
