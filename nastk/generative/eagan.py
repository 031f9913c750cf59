"""EAGAN: two-stage evolutionary search of a GAN generator, then a discriminator (methods.md 5.2-5.3).

Stage 1 ("many-to-one"): the G supernet is trained with the ``adversarial`` step against EAGAN's fixed
discriminator, a G path drawn per window from the population (random ones during warm-up). At every
EA epoch, offspring are made (half mutations, half one-element crossovers, duplicates of anything
evaluated rejected unless ``dedup random_only``), parents + offspring are scored with the shared
weights (IS and FID of ``eval_samples`` images in the in-project feature net, and the stand-alone
G's parameters) and the population is cut back by non-dominated sorting over (1/IS, FID, params):
EAGAN's merged-front selection (``selection eagan``, :mod:`nastk.survivor_selection`) or
textbook NSGA-II with crowding (``selection nsga2``, optuna's elite selection).

Stage 2 ("one-to-one"): a fresh step trains the D supernet against the stand-alone G of the stage-1
winner; every population slot owns a real copy of G (reset to the warm-up G when the EA starts and to
the best pair's G after every selection, the paper's weight resetting; ``reset new_only`` resets the
offspring's slots only). At each EA epoch the population is scored by its paired G's IS / FID and D's
parameters, the better half kept, the other half refilled with offspring.
``alias_generator_copies true`` reproduces the released code's aliasing copies for comparison.

Selection reads IS / FID against the *training* images; nothing here reads the test split. Every
random draw is seeded from (seed, stage, epoch) and every round is journaled before it is applied,
so a killed search resumes exactly (the trainer's checkpoints are per epoch).
"""
from __future__ import annotations

import copy
import json
import time
import types
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from nastk.devices import resolve_device
from nastk.errors import ConfigError, RunError
from nastk.generative.config import SELECTIONS, EaganConfig
from nastk.generative.features import feature_extractor, gan_images
from nastk.generative.metrics import GenerativeMetrics, metric_name, sample_images
from nastk.oneshot.context import seed_of
from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer
from nastk.paths import atomic_write
from nastk.plain_data import plain
from nastk.readers import read_json

# --- selection ------------------------------------------------------------------------------------------
def select_survivors(losses: np.ndarray, size: int, method: str, seed: Sequence[int]) -> List[int]:
    """Indices of ``size`` survivors of a (candidates x objectives) loss matrix (lower is better): EAGAN's
    merged fronts (:class:`~nastk.survivor_selection.EaganSelection`) or optuna's NSGA-II elite
    selection (fronts, then descending crowding distance), both on the same trial records."""
    import optuna
    from optuna.samplers.nsgaii._elite_population_selection_strategy import NSGAIIElitePopulationSelectionStrategy
    from optuna.trial import FrozenTrial, TrialState

    from nastk.survivor_selection import EaganSelection

    losses = np.asarray(losses, dtype=float)
    trials = [FrozenTrial(number=i, trial_id=i, state=TrialState.COMPLETE, value=None, values=list(row),
                          datetime_start=None, datetime_complete=None, params={}, distributions={}, user_attrs={},
                          system_attrs={}, intermediate_values={}) for i, row in enumerate(losses)]
    study = types.SimpleNamespace(directions=[optuna.study.StudyDirection.MINIMIZE] * losses.shape[1])
    size = min(size, len(trials))
    if method == "eagan":
        chosen = EaganSelection(size, seed=seed_of(*seed))(study, trials)
    elif method == "nsga2":
        chosen = NSGAIIElitePopulationSelectionStrategy(population_size=max(size, 2))(study, list(trials))[:size]
    else:
        raise ConfigError(f"unknown selection {method!r}; known: {', '.join(SELECTIONS)}")
    return [t.number for t in chosen]


def pareto_front(losses: np.ndarray) -> List[int]:
    """Indices of the non-dominated rows (minimisation)."""
    from optuna.study._multi_objective import _fast_non_domination_rank

    ranks = _fast_non_domination_rank(np.asarray(losses, dtype=float))
    return [int(i) for i in np.flatnonzero(ranks == 0)]


def objectives(record: Dict[str, float]) -> List[float]:
    """(1/IS, FID, params) of a scored candidate: EAGAN's minimised objectives."""
    return [1.0 / max(record["is"], 1e-9), record["fid"], record["params_m"]]


# --- collapse ---------------------------------------------------------------------------------------------
def collapse_report(history: Sequence[Dict[str, float]], is_floor: float = 3.0, jump: float = 2.0) -> Dict[str, Any]:
    """Mode collapse from a training's checkpoint scores: IS below ``is_floor`` (a generator covering
    about that many of the 10 classes or fewer) or the last FID ``jump`` times (and 20 above) its best."""
    if not history:
        return {"collapsed": False, "reason": "no checkpoints"}
    last, best = history[-1], min(h["fid"] for h in history)
    reasons = []
    if last["is"] < is_floor:
        reasons.append(f"IS {last['is']:.2f} < {is_floor}")
    if last["fid"] > jump * best and last["fid"] > best + 20:
        reasons.append(f"FID jumped from its best {best:.1f} to {last['fid']:.1f}")
    return {"collapsed": bool(reasons), "reason": "; ".join(reasons)}


# --- the search -------------------------------------------------------------------------------------------
class EaganSearch:
    """A two-stage EAGAN run in ``run_dir`` (``config.json``, ``stage1/``, ``stage2/``, ``final/`` trainer
    folders, ``stage1.json`` / ``stage2.json`` / ``final.json`` journals, ``summary.json``, Pareto plots)."""

    def __init__(self, config: EaganConfig, run_dir, resume: bool = False, device=None, progress: bool = False,
                 metrics: Optional[GenerativeMetrics] = None, stop_after_epoch: Optional[Callable] = None):
        from nastk.run_folder import Run

        # None: torch's default device (nastk.devices.resolve_device)
        self.config, self.run_dir, self.device, self.progress = config, Path(run_dir), resolve_device(device), progress
        self.images = gan_images(config.dataset)
        self.data = self.images.as_dataset()
        self.metrics = metrics or GenerativeMetrics(feature_extractor(config.dataset, device), self.images.x_train)
        self.g_space, self.d_space = config.spaces
        self.run = Run(self.run_dir, {"kind": "eagan", **asdict(config)}, resume=resume)
        #: test hook: called as f(stage, epoch) after each trained epoch (e.g. to simulate a kill)
        self.stop_after_epoch = stop_after_epoch

    # --- helpers ---------------------------------------------------------------------------------------
    def _journal(self, name: str) -> Dict[str, Any]:
        path = self.run_dir / f"{name}.json"
        return read_json(path, RunError, f"EAGAN journal {name}") if path.is_file() else {}

    def _save(self, name: str, state: Dict[str, Any]) -> None:
        with atomic_write(self.run_dir / f"{name}.json", "w") as handle:
            json.dump(plain(state, nonfinite_as_none=True), handle, indent=1)

    def _trainer(self, stage: str, space_name: str, epochs: int, step_options: Dict[str, Any], supernet_options):
        config = OneShotConfig(space=space_name, dataset=self.config.dataset, step="adversarial",
                               step_options=step_options, supernet=supernet_options, epochs=epochs,
                               batch_size=self.config.batch_size, valid_size=0, augment=False,
                               train_size=self.config.train_size or None,
                               seed=seed_of(self.config.seed, {"stage1": 1, "stage2": 2}.get(stage, 3)) % (2 ** 31))
        callbacks = [lambda trainer, record: self.stop_after_epoch(stage, trainer.epoch)] if self.stop_after_epoch else []
        trainer = OneShotTrainer(config, self.run_dir / stage, self.device, data=self.data, progress=self.progress,
                                 metrics={}, callbacks=callbacks)
        trainer.label = f"{stage}: "  # the epoch lines say which stage (or final pair) they belong to
        trainer.load_checkpoint()
        return trainer

    def _g_supernet_options(self):
        c = self.config
        return {k: v for k, v in (("width", c.g_width), ("latent_per_cell", c.latent_per_cell)) if v}

    def _d_supernet_options(self):
        return {"width": self.config.d_width} if self.config.d_width else {}

    def score(self, generator: torch.nn.Module, latent_dim: int, epoch: int) -> Dict[str, float]:
        """IS / FID / KID of ``eval_samples`` images (the same seeded latents for every candidate of a round)."""
        generator.eval()
        images = sample_images(generator, self.config.eval_samples, latent_dim, seed_of(self.config.seed, epoch, 7),
                               self.device)
        generator.train()
        raw = self.metrics.evaluate(images)
        name, n = self.metrics.extractor.name, self.config.eval_samples
        return {"fid": raw[metric_name("fid", name, n)], "is": raw[metric_name("is", name, n)],
                "kid": raw[metric_name("kid", name, n)]}

    def _offspring(self, space, parents: List, count: int, seen: set, rng: np.random.Generator) -> List:
        children = []
        for _ in range(count):
            for attempt in range(200):
                a = parents[int(rng.integers(len(parents)))]
                if rng.random() < 0.5:
                    child = space.mutate(a, rng)
                else:
                    child = space.crossover(a, parents[int(rng.integers(len(parents)))], rng)
                key = space.to_str(child)
                if self.config.dedup == "random_only" or (key not in seen and child not in children):
                    break
            children.append(child)
            seen.add(space.to_str(child))
        return children

    def _random_population(self, space, stage: int) -> List:
        rng = np.random.default_rng(seed_of(self.config.seed, stage, 0))
        population, keys = [], set()
        while len(population) < self.config.population:
            arch = space.sample(rng)
            if space.to_str(arch) not in keys:
                keys.add(space.to_str(arch))
                population.append(arch)
        return population

    def _ea_epochs(self, warmup: int, epochs: int) -> List[int]:
        """Epochs after which an EA round runs: warm-up end, every ``ga_interval`` after, and the last."""
        marks = [e for e in range(max(warmup, 1), epochs + 1) if (e - warmup) % self.config.ga_interval == 0]
        return sorted(set(marks + [epochs]))

    def _drive(self, trainer, marks: List[int], at_mark: Callable[[int], None]) -> None:
        """Train up to each mark, then ``at_mark(mark)``: a mark already journaled re-applies its outcome
        (a run killed between the journal and the next checkpoint resumes from the checkpoint before it)."""
        for mark in marks:
            if trainer.epoch > mark:
                continue
            trainer.fit(until=mark)
            at_mark(mark)

    # --- stage 1 --------------------------------------------------------------------------------------
    def stage1(self) -> Dict[str, Any]:
        c, space = self.config, self.g_space
        state = self._journal("stage1")
        trainer = self._trainer("stage1", space.name, c.stage1_epochs,
                                {"search": "generator", "discriminator": "fixed", "n_critic": c.stage1_n_critic,
                                 "lr_g": c.lr_g, "lr_d": c.lr_d, "g_batch_factor": c.g_batch_factor,
                                 "warmup_epochs": c.stage1_warmup}, self._g_supernet_options())
        supernet, step = trainer.supernet, trainer.step
        if not state:
            state = {"population": [space.to_str(a) for a in self._random_population(space, 1)], "rounds": [],
                     "evaluated": []}
            self._save("stage1", state)
        self._apply_population(step, supernet, space, state["population"])
        params = {}

        def g_params(key):
            if key not in params:
                params[key] = space.cost(space.from_str(key), **self._g_supernet_options())["params_m"]
            return params[key]

        def at_mark(epoch: int) -> None:
            if any(r["epoch"] == epoch for r in state["rounds"]):
                return
            rng = np.random.default_rng(seed_of(c.seed, 1, epoch))
            parents = [space.from_str(s) for s in state["population"]]
            seen = set(state["evaluated"]) | set(state["population"])
            children = self._offspring(space, parents, c.population, seen, rng)
            candidates = parents + children
            records = []
            for arch in candidates:
                key = space.to_str(arch)
                supernet.set_active(arch)
                records.append({"arch": key, **self.score(supernet, supernet.latent_dim, epoch),
                                "params_m": g_params(key)})
            losses = np.array([objectives(r) for r in records])
            survivors = select_survivors(losses, c.population, c.selection, (c.seed, 1, epoch))
            chosen = select_survivors(losses[survivors], c.num_selected, c.selection, (c.seed, 1, epoch, 1))
            front = pareto_front(losses)
            for i, r in enumerate(records):
                r["survived"], r["pareto"] = i in survivors, i in front
            state["rounds"].append({"epoch": epoch, "candidates": records,
                                    "selected": [records[survivors[i]]["arch"] for i in chosen]})
            state["evaluated"] = sorted(set(state["evaluated"]) | {r["arch"] for r in records})
            state["population"] = [records[i]["arch"] for i in survivors]
            self._save("stage1", state)
            self._apply_population(step, supernet, space, state["population"])

        self._drive(trainer, self._ea_epochs(c.stage1_warmup, c.stage1_epochs), at_mark)
        last = state["rounds"][-1]
        selected = [r for r in last["candidates"] if r["arch"] in last["selected"]]
        winner = min(selected, key=lambda r: r["fid"])
        state["winner"] = winner
        self._save("stage1", state)
        return state

    @staticmethod
    def _apply_population(step, supernet, space, population: Sequence[str]) -> None:
        step.set_population([supernet.path_of_arch(space.from_str(s)) for s in population])

    # --- stage 2 --------------------------------------------------------------------------------------
    def stage2(self, generator_arch: str) -> Dict[str, Any]:
        c, space = self.config, self.d_space
        state = self._journal("stage2")
        trainer = self._trainer("stage2", space.name, c.stage2_epochs,
                                {"search": "discriminator", "generator_arch": generator_arch,
                                 "n_critic": c.stage2_n_critic, "lr_g": c.lr_g, "lr_d": c.lr_d,
                                 "g_batch_factor": c.g_batch_factor, "warmup_epochs": c.stage2_warmup,
                                 "alias_generator_copies": c.alias_generator_copies, "slots": c.population,
                                 "other_width": c.g_width, "other_latent_per_cell": c.latent_per_cell},
                                self._d_supernet_options())
        supernet, step = trainer.supernet, trainer.step
        if not state:
            state = {"generator_arch": generator_arch, "rounds": [], "evaluated": [], "warmup_reset": False,
                     "population": [space.to_str(a) for a in self._random_population(space, 2)]}
            self._save("stage2", state)
        self._apply_population(step, supernet, space, state["population"])
        g_latent = step.g_module.latent_dim

        def score_slot(slot: int, epoch: int) -> Dict[str, float]:
            live = step.generator_state()
            step.load_copy(slot)
            scored = self.score(step.g_module, g_latent, epoch)
            step.g_module.load_state_dict(live)
            return scored

        def warmup_end(epoch: int) -> None:
            # the EA starts: every copy from the warm-up G (the released code's copies keep the random init)
            if not state["warmup_reset"]:
                state["warmup_reset"] = True
                self._save("stage2", state)
            step.reset_copies()

        def at_mark(epoch: int) -> None:
            if epoch == c.stage2_warmup:
                warmup_end(epoch)
            journaled = [r for r in state["rounds"] if r["epoch"] == epoch]
            if journaled:  # resumed from the checkpoint taken before this round was applied
                self._apply_stage2_round(step, supernet, space, state, journaled[0])
                return
            if epoch == c.stage2_warmup and epoch != c.stage2_epochs:
                return  # the round after the first EA window
            records = []
            for slot, key in enumerate(state["population"]):
                records.append({"arch": key, "slot": slot, **score_slot(slot, epoch),
                                "params_m": space.cost(space.from_str(key), **self._d_supernet_options())["params_m"]})
            losses = np.array([objectives(r) for r in records])
            keep = max(1, c.population // 2)
            survivors = select_survivors(losses, keep, c.selection, (c.seed, 2, epoch))
            front = pareto_front(losses)
            for i, r in enumerate(records):
                r["survived"], r["pareto"] = i in survivors, i in front
            best = min(survivors, key=lambda i: records[i]["fid"])
            round_ = {"epoch": epoch, "candidates": records, "best": records[best]["arch"]}
            if epoch < c.stage2_epochs:
                rng = np.random.default_rng(seed_of(c.seed, 2, epoch))
                parents = [space.from_str(records[i]["arch"]) for i in survivors]
                seen = set(state["evaluated"]) | {r["arch"] for r in records}
                children = self._offspring(space, parents, c.population - keep, seen, rng)
                state["population"] = [records[i]["arch"] for i in survivors] + [space.to_str(a) for a in children]
                round_["survivor_slots"] = [records[i]["slot"] for i in survivors]
            state["rounds"].append(round_)
            state["evaluated"] = sorted(set(state["evaluated"]) | {r["arch"] for r in records})
            self._save("stage2", state)
            self._apply_stage2_round(step, supernet, space, state, round_)

        self._drive(trainer, self._ea_epochs(c.stage2_warmup, c.stage2_epochs), at_mark)
        last = state["rounds"][-1]
        state["winner"] = min((r for r in last["candidates"] if r["survived"]), key=lambda r: r["fid"])
        self._save("stage2", state)
        return state

    def _apply_stage2_round(self, step, supernet, space, state, round_) -> None:
        """Weight resetting after a selection: every copy (``reset all``) or the offspring's slots
        (``reset new_only``, survivors' copies moved with them) become the best pair's G."""
        if "survivor_slots" not in round_:
            return
        best_slot = next(r["slot"] for r in round_["candidates"] if r["arch"] == round_["best"])
        best = step.generator_state(best_slot)
        if self.config.reset == "new_only" and not step.alias:
            old = [step.generator_state(s) for s in round_["survivor_slots"]]
            for slot, copy_ in enumerate(old):
                step.copies[slot] = copy_
            step.reset_copies(best, slots=range(len(old), len(step.copies)))
        else:
            step.reset_copies(best)
        self._apply_population(step, supernet, space, state["population"])

    # --- the final stand-alone pair -------------------------------------------------------------------
    def train_pair(self, g_arch: str, d_arch: str, folder: str) -> Dict[str, Any]:
        return train_pair(self, g_arch, d_arch, folder)

    def search(self) -> Dict[str, Any]:
        started = time.perf_counter()
        s1 = self.stage1()
        g = s1["winner"]["arch"]
        s2 = self.stage2(g) if self.config.stage2_epochs else {"winner": {"arch": None}}
        d = s2["winner"]["arch"] or self.d_space.to_str(self.d_space.sample(np.random.default_rng(self.config.seed)))
        final = self.train_pair(g, d, "final") if self.config.final_d_steps else {}
        summary = {"generator": g, "discriminator": d, "final": final, "wall_s": round(time.perf_counter() - started, 1)}
        with atomic_write(self.run_dir / "summary.json", "w") as handle:
            json.dump(plain(summary, nonfinite_as_none=True), handle, indent=1)
        plot_fronts(self.run_dir)
        return summary


def train_pair(search: EaganSearch, g_arch: str, d_arch: str, folder: str) -> Dict[str, Any]:
    """Train a (G, D) genotype pair from scratch: the G supernet pinned to ``g_arch`` (the same compute
    and weights as the stand-alone G), the stand-alone D, EMA of G; scored every ``final_eval_every``
    epochs. Reports the last checkpoint, and separately best-of-checkpoints (EAGAN's choice, selected
    on the metric itself)."""
    c = search.config
    g_space = search.g_space
    steps_per_epoch = -(-(c.train_size or len(search.data.x_train)) // c.batch_size)  # the last, smaller batch too
    epochs = max(1, -(-c.final_d_steps // steps_per_epoch))
    state = search._journal(folder)
    trainer = search._trainer(folder, g_space.name, epochs,
                              {"search": "generator", "discriminator": d_arch, "n_critic": c.final_n_critic,
                               "lr_g": c.final_lr_g, "lr_d": c.final_lr_d, "g_batch_factor": c.g_batch_factor,
                               "ema": c.final_ema, "other_width": c.d_width}, search._g_supernet_options())
    supernet, step = trainer.supernet, trainer.step
    path = supernet.path_of_arch(g_space.from_str(g_arch))
    step.set_population([path])
    if not state:
        state = {"generator": g_arch, "discriminator": d_arch, "checkpoints": []}
    ema_net = copy.deepcopy(supernet)

    def at_mark(epoch: int) -> None:
        if any(r["epoch"] == epoch for r in state["checkpoints"]):
            return
        ema = step.ema_state()
        if ema is not None:
            ema_net.load_state_dict({**supernet.state_dict(), **ema})
        else:
            ema_net.load_state_dict(supernet.state_dict())
        ema_net.set_active(path)
        record = {"epoch": epoch, "d_steps": sum(r["steps"] for r in trainer.history[:epoch]), **search.score(ema_net, supernet.latent_dim, 10_000 + epoch)}
        state["checkpoints"].append(record)
        search._save(folder, state)

    marks = sorted(set(list(range(c.final_eval_every, epochs + 1, c.final_eval_every)) + [epochs]))
    search._drive(trainer, marks, at_mark)
    history = state["checkpoints"]
    best = min(history, key=lambda r: r["fid"])
    n, name = c.eval_samples, search.metrics.extractor.name
    state.update({"last": history[-1], "best_of_checkpoints": best, "collapse": collapse_report(history),
                  "fid_name": metric_name("fid", name, n), "is_name": metric_name("is", name, n),
                  "g_params_m": g_space.cost(g_space.from_str(g_arch), **search._g_supernet_options())["params_m"],
                  "d_params_m": search.d_space.cost(search.d_space.from_str(d_arch), **search._d_supernet_options())["params_m"],
                  "d_steps": history[-1]["d_steps"], "train_wall_s": round(sum(r["epoch_s"] for r in trainer.history), 1)})
    search._save(folder, state)
    return state


def plot_fronts(run_dir) -> List[Path]:
    """``pareto_stage1.png`` / ``pareto_stage2.png``: FID vs IS of the last round, size as marker area,
    the Pareto front marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nastk.paths import save_figure

    out = []
    for stage in ("stage1", "stage2"):
        path = Path(run_dir) / f"{stage}.json"
        if not path.is_file():
            continue
        state = read_json(path, RunError, f"EAGAN journal {stage}")
        if not state.get("rounds"):
            continue
        fig, ax = plt.subplots(figsize=(5, 4))
        for round_, alpha in ((state["rounds"][0], 0.3), (state["rounds"][-1], 1.0)):
            records = round_["candidates"]
            xs, ys = [r["is"] for r in records], [r["fid"] for r in records]
            sizes = [20 + 400 * r["params_m"] / max(q["params_m"] for q in records) for r in records]
            colors = ["tab:red" if r["pareto"] else "tab:blue" for r in records]
            ax.scatter(xs, ys, s=sizes, c=colors, alpha=alpha, label=f"epoch {round_['epoch']}")
        ax.set_xlabel("IS (in-project features)")
        ax.set_ylabel("FID (in-project features)")
        ax.set_title(f"EAGAN {stage}: red = Pareto (1/IS, FID, params)")
        ax.legend(fontsize=7)
        out.append(save_figure(fig, Path(run_dir) / f"pareto_{stage}.png"))
        plt.close(fig)
    return out
