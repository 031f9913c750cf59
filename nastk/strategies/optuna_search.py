"""Query strategies whose proposals come from optuna samplers: BO with TPE (``bo-tpe``) or a Gaussian
process (``bo-gp``), and NSGA-II (``nsga2``), single- or multi-objective.

Each strategy owns an optuna study. ``ask`` is ``study.ask()`` followed by the space's own
:meth:`~nastk.space.SearchSpace.suggest` (NB201: six categorical edges), so the sampler models the
space's real dimensions; ``tell`` records the objective values (``--objectives``; FAIL when one is
missing) and the whole :class:`Result` as trial attributes. Every ask is a query, as for random
search and evolution: a sampler that proposes an architecture again spends budget on it (the
reproduction report counts how often this happens).

Nothing is hand-written: TPE, the GP (``GPSampler``, torch + scipy) and NSGA-II's non-dominated
sorting and crowding are optuna's. EAGAN's selection replaces NSGA-II's through optuna's
``elite_population_selection_strategy`` hook (:mod:`nastk.survivor_selection`).

Resume. A sampler's only state besides the study is its seeded RNG (and GPSampler's kernel cache,
which is a function of the told history), so the same seed and the same told results give the same
proposals: the engine's journal replay works unchanged. ``state_dict`` keeps the told history and
``load_state_dict`` replays it through a fresh study instead of pickling library objects.

Parallel workers use the same sampler factory, :meth:`OptunaStrategy.start` and
:meth:`OptunaStrategy.complete` against a shared storage (:mod:`nastk.parallel`).
"""
from __future__ import annotations

import abc
import math
import re
import warnings
from contextlib import contextmanager
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import optuna

from nastk.architecture import Architecture
from nastk.errors import ConfigError, RunError
from nastk.evaluator import Result
from nastk.evaluators.multi_objective import Objective, parse_objectives, violations
from nastk.options import Bool, Int, Option, Text
from nastk.strategy import Strategy

# Per-trial INFO lines would drown nastk's own output; warnings still show.
optuna.logging.set_verbosity(optuna.logging.WARNING)
# An infeasible trial that was not evaluated is told the worst value (-inf for accuracy); optuna's GP
# clips it to the worst finite value, as intended, and would say so on every proposal.
warnings.filterwarnings("ignore", message="Clip non-finite values to the min/max finite values for GP fittings")


class OptunaStrategy(Strategy):
    """Base of the optuna-backed strategies: a study whose sampler proposes through ``space.suggest``."""

    requires: Tuple[str, ...] = ("optuna",)
    RUN_OPTIONS = ("objectives",)
    OPTIONS = (Option("n_startup_trials", Int(minimum=0), "random trials before the sampler models the results"),)
    #: Whether the sampler computes with torch (optuna's GP does).
    uses_torch = False

    def __init__(self, space, seed: int = 0, objectives: Union[None, str, Sequence[str]] = None,
                 n_startup_trials: int = 10):
        super().__init__(space, seed)
        self.objectives: Tuple[Objective, ...] = parse_objectives(objectives)
        if int(n_startup_trials) < 0:
            raise ConfigError(f"n_startup_trials must be >= 0, got {n_startup_trials}")
        self.n_startup_trials = int(n_startup_trials)
        self._study: Optional[optuna.Study] = None
        self._pending: Dict[Architecture, List[optuna.Trial]] = {}
        self.history: List[Tuple[str, Dict[str, Any]]] = []

    # --- what subclasses define -------------------------------------------------------------------
    @abc.abstractmethod
    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        """A fresh sampler seeded with ``seed``."""

    def propose(self, trial: optuna.Trial) -> Architecture:
        """The architecture a trial's suggestions describe (default: the space's own parameters)."""
        return self.space.suggest(trial)

    # --- the study ----------------------------------------------------------------------------------
    @property
    def directions(self) -> List[str]:
        return [objective.direction for objective in self.objectives]

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            self._study = optuna.create_study(sampler=self.sampler(self.seed), directions=self.directions)
        return self._study

    def sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():  # optuna flags some sampler arguments as experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return self.make_sampler(seed)

    def start(self, trial: optuna.Trial) -> Architecture:
        """The architecture an asked trial proposes; the trial is labelled with it.

        Sampling runs with one torch thread: optuna's GP issues many tiny torch calls, and an OpenMP
        pool competing for busy cores made each proposal 20-40x slower in our measurements.
        """
        with _one_torch_thread(self.uses_torch):
            arch = self.propose(trial)
        trial.set_user_attr("arch", arch.to_str())
        return arch

    def complete(self, study: optuna.Study, trial: optuna.Trial, result: Result) -> None:
        """Tell ``study`` the objective values of one evaluation and keep the result on the trial,
        so the study alone holds the whole search (and can be inspected with optuna's tools).

        A result of a constrained run (``--constraint``) also gives the trial its violations
        (``Trial.set_constraint``, so TPE, the GP and NSGA-II search constrained); an infeasible one is
        told COMPLETE with its measured values, the worst value standing in for those it lacks (it was
        not evaluated), so it counts as a query in the study as in the journal.
        """
        trial.set_user_attr("result", result.to_dict())
        amounts = violations(result)
        if amounts and self.constraint_aware:
            for text, amount in amounts.items():
                trial.set_constraint(text, _constraint_value(text, amount))
        if result.infeasible:
            measured = [o.value(result, raw=self.constraint_aware) for o in self.objectives]
            study.tell(trial, [v if math.isfinite(v) else o.worst for o, v in zip(self.objectives, measured)])
            return
        values = [objective.value(result) for objective in self.objectives]
        if all(math.isfinite(v) for v in values):
            study.tell(trial, values)
        else:  # optuna cannot rank a missing value; samplers ignore failed trials
            study.tell(trial, state=optuna.trial.TrialState.FAIL)

    @property
    def constraint_aware(self) -> bool:
        """Whether the sampler reads the trials' constraints (optuna 5's samplers do); when not, an
        infeasible trial is told the worst value of every objective instead of its measured ones."""
        return _SETS_CONSTRAINTS

    # --- ask / tell ---------------------------------------------------------------------------------
    def ask(self) -> Architecture:
        trial = self.study.ask()
        arch = self.start(trial)
        self._pending.setdefault(arch, []).append(trial)
        return arch

    def tell(self, arch: Architecture, result: Result) -> None:
        pending = self._pending.get(arch)
        if not pending:
            raise ConfigError(f"{self.name} was told about {arch.to_str()}, which it has not asked for")
        self.complete(self.study, pending.pop(0), result)
        self.history.append((arch.to_str(), result.to_dict()))

    # --- state --------------------------------------------------------------------------------------
    def options(self) -> Dict[str, Any]:
        return {"objectives": [objective.name for objective in self.objectives],
                "n_startup_trials": self.n_startup_trials}

    def state_dict(self) -> Dict[str, Any]:
        state = super().state_dict()
        state.update(options=self.options(), history=[[arch, result] for arch, result in self.history])
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Replay the told history through a fresh study seeded like the original."""
        self.seed = state["seed"]
        self._study, self._pending, self.history = None, {}, []
        for arch_str, result in state["history"]:
            arch = self.ask()
            if arch.to_str() != arch_str:
                raise RunError(f"{self.name} state replay diverged: proposed {arch.to_str()}, the state holds {arch_str}")
            self.tell(arch, Result.from_dict(result))
        super().load_state_dict(state)


#: Whether this optuna has per-trial constraints (5.0+); older ones see infeasible trials only as
#: the worst values.
_SETS_CONSTRAINTS = hasattr(optuna.trial.Trial, "set_constraint")


def _constraint_value(text: str, amount: Optional[float]) -> float:
    """A violation as optuna takes it: not measured (None: the architecture was skipped on another
    constraint) counts as satisfied, an unmeasurable metric (NaN) as violated by the bound's size."""
    if amount is None:
        return 0.0
    if math.isfinite(amount):
        return float(amount)
    bound = re.split(r"<=|>=|<|>", text)[-1]
    try:
        return max(abs(float(bound)), 1.0)
    except ValueError:
        return 1.0


@contextmanager
def _one_torch_thread(uses_torch: bool):
    """Limit torch to one thread while optuna samples (torch-based samplers only)."""
    if not uses_torch:
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class TPESearch(OptunaStrategy):
    """BO with optuna's tree-structured Parzen estimator (multi-objective: MOTPE)."""

    name = "bo-tpe"

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials)


class GPSearch(OptunaStrategy):
    """BO with optuna's Gaussian-process sampler (log EI; multi-objective: log EHVI)."""

    name = "bo-gp"
    uses_torch = True
    OPTIONS = OptunaStrategy.OPTIONS + (
        Option("deterministic", Bool(), "tell the GP the objective is noise-free (look-ups; seeded training)"),)

    def __init__(self, space, seed: int = 0, objectives=None, n_startup_trials: int = 10,
                 deterministic: bool = True):
        super().__init__(space, seed, objectives, n_startup_trials)
        # nastk's evaluators return the same result for the same architecture (table look-ups;
        # training seeded per architecture), so the GP need not model observation noise.
        self.deterministic = bool(deterministic)

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=self.n_startup_trials,
                                         deterministic_objective=self.deterministic)

    def options(self) -> Dict[str, Any]:
        return {**super().options(), "deterministic": self.deterministic}


class NSGA2Search(OptunaStrategy):
    """NSGA-II (optuna's sampler): uniform crossover, mutation, non-dominated sorting + crowding."""

    name = "nsga2"
    SELECTIONS = ("nsga2", "eagan")
    OPTIONS = (Option("population_size", Int(minimum=2), "individuals per generation"),
               Option("selection", Text(choices=SELECTIONS, nullable=False),
                      "survivor selection: NSGA-II's crowding or EAGAN's merged-front selection"))

    def __init__(self, space, seed: int = 0, objectives=None, population_size: int = 10,
                 selection: str = "nsga2"):
        super().__init__(space, seed, objectives, n_startup_trials=0)
        if int(population_size) < 2:
            raise ConfigError(f"NSGA-II needs population_size >= 2, got {population_size}")
        if selection not in self.SELECTIONS:
            raise ConfigError(f"unknown NSGA-II selection {selection!r}; known: {', '.join(self.SELECTIONS)}")
        self.population_size, self.selection = int(population_size), selection

    @property
    def constraint_aware(self) -> bool:
        return super().constraint_aware and self.selection != "eagan"  # EAGAN's selection reads values only

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        elite = None
        if self.selection == "eagan":
            from nastk.survivor_selection import EaganSelection

            elite = EaganSelection(self.population_size, seed=seed)
        return optuna.samplers.NSGAIISampler(population_size=self.population_size, seed=seed,
                                             elite_population_selection_strategy=elite)

    def options(self) -> Dict[str, Any]:
        return {"objectives": [o.name for o in self.objectives], "population_size": self.population_size,
                "selection": self.selection}
