"""Flower lives here: the Message-API ``ClientApp`` and ``ServerApp`` of a medseg federation.

* :func:`client_app`: each SuperNode is one site (``partition-id`` -> its results folder);
  ``train`` runs the round's local steps on the shared engine
  (:class:`~medseg.federated.local.SiteTrainer`) from the global weights and replies with
  weights and numbers (``num-examples``, ``train_loss``, ``site-index``); ``evaluate``
  replies with the site's validation Dice. Under FedBN a site's normalisation layers are
  kept in its ``Context.state``. Every reply passes the privacy hook first.
* :func:`server_app`: Flower's ``FedAvg`` or ``FedProx`` (``proximal-mu`` sent to sites),
  weighted by ``num-examples``, whose aggregation is medseg's :func:`~.aggregate.fedavg`
  after :func:`~.aggregate.screen_updates` dropped (and named) any site whose weights are
  not finite; every round the global model becomes ``RESULTS/<config>/fold_0/
  checkpoint_{latest,best}.pt`` (so ``medseg predict -m RESULTS`` loads it) and one line of
  ``rounds.jsonl`` (metrics, bytes, seconds, what each reply carried).
* :data:`client` and :data:`server`: the same two apps for Flower's deployment runtime
  (``flwr run`` against a SuperLink, see :mod:`~.deploy`): the run's settings come from the
  run config (``[tool.flwr.app.config]`` of the app ``deploy.write_app`` writes), each
  SuperNode names its own site folder in its node config (``site-results``,
  ``partition-id``), and the server reads the plan from the run's results folder. There
  every message runs in a fresh ``flwr-clientapp`` process, so a site's trainer is built
  (and its store opened) once per message, not once per run as in the simulation.

Written for ``flwr`` 1.42 (the ``federated`` extra); imported only by ``run.py`` and by
Flower's own app processes (the components ``deploy.write_app`` names).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedProx

from medseg.federated.aggregate import fedavg, screen_updates
from medseg.federated.local import SiteTrainer
from medseg.fileutil import write_json_atomic
from medseg.planning.plan import Plan, Plans
from medseg.training.checkpoint import build_model, save_checkpoint

log = logging.getLogger(__name__)
_TRAINERS: dict[tuple, SiteTrainer] = {}  # per worker process: a site's data stays loaded


def to_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    record = ArrayRecord()
    for key, value in arrays.items():
        record[key] = Array.from_numpy_ndarray(np.ascontiguousarray(value))
    return record


def from_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {key: record[key].numpy() for key in record.keys()}


def client_app(site_results: list[str] | None, settings: dict[str, Any] | None) -> ClientApp:
    """The sites' app; ``settings``: configuration, local_steps, rounds, fedbn, seed, dp_clip,
    dp_noise. ``None``, ``None``: deployed, each SuperNode's node config names its site."""
    app = ClientApp()

    def trainer(context: Context) -> tuple[int, SiteTrainer]:
        index, results, config = _site_of(context, site_results, settings)
        key = (results, *sorted(config.items()))
        if key not in _TRAINERS:
            torch.set_num_threads(1)
            _TRAINERS[key] = SiteTrainer(
                results,
                config["configuration"],
                local_steps=config["local_steps"],
                rounds=config["rounds"],
                fedbn=config["fedbn"],
                seed=config["seed"],
                dp_clip=config.get("dp_clip", 0.0),
                dp_noise=config.get("dp_noise", 0.0),
            )
        site = _TRAINERS[key]
        own = context.state.array_records.get("fedbn")
        site.local_state = (
            {k: torch.from_numpy(v) for k, v in from_record(own).items()} if own else {}
        )
        return index, site

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        index, site = trainer(context)
        config = msg.content["config"]
        mu = float(config.get("proximal-mu", 0.0))
        started = time.perf_counter()
        arrays, metrics = site.train(
            from_record(msg.content["arrays"]), int(config["server-round"]), mu=mu
        )
        metrics["train_seconds"] = time.perf_counter() - started
        if site.keep:
            context.state["fedbn"] = to_record({k: arrays[k] for k in site.keep})
        metrics["site-index"] = float(index)
        content = RecordDict({"arrays": to_record(arrays), "metrics": MetricRecord(metrics)})
        return Message(content=content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        _, site = trainer(context)
        metrics = site.evaluate(from_record(msg.content["arrays"]))
        return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)

    return app


CLIENT_KEYS = ("configuration", "local_steps", "rounds", "fedbn", "seed", "dp_clip", "dp_noise")


def run_settings(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a deployed run carries in its run config (``local-steps`` ->
    ``local_steps``)."""
    return {k.replace("-", "_"): v for k, v in run_config.items()}


def _site_of(
    context: Context, site_results: list[str] | None, settings: dict[str, Any] | None
) -> tuple[int, str, dict[str, Any]]:
    """The site's index, results folder and settings: from the simulation's arguments, or
    (deployed) from the SuperNode's node config and the run config."""
    node = context.node_config
    if site_results is not None and settings is not None:
        index = int(node["partition-id"])
        return index, site_results[index], settings
    missing = [k for k in ("partition-id", "site-results") if k not in node]
    if missing:
        raise ValueError(
            f"this SuperNode's --node-config lacks {missing}: start it with --node-config "
            "\"partition-id=0 site-results='RESULTS/sites/site_0'\""
        )
    config = run_settings(context.run_config)
    return int(node["partition-id"]), str(node["site-results"]), {k: config[k] for k in CLIENT_KEYS}


def _strategy_class(name: str) -> type[FedAvg]:
    base = FedProx if name == "fedprox" else FedAvg

    class Screened(base):  # type: ignore[misc, valid-type]
        """``base`` whose aggregation drops non-finite sites and records each round."""

        rounds: list[dict[str, Any]]

        def aggregate_train(
            self, server_round: int, replies: Iterable[Message]
        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
            valid, failed = self._check_and_log_replies(replies, is_train=True)
            for message in failed:
                log.warning(
                    "round %d: a site dropped out (node %d: %s); the round goes on without it",
                    server_round,
                    message.metadata.src_node_id,
                    message.error.reason.splitlines()[-1] if message.error.reason else "",
                )
            if not valid:
                self.rounds.append(
                    {
                        "round": server_round,
                        "rejected": [],
                        "dropped": len(failed),
                        "sites": [],
                        "train_seconds": [],
                        "bytes_up": 0,
                        "replies": [],
                    }
                )
                return None, None
            contents = [m.content for m in valid]
            states = [from_record(c["arrays"]) for c in contents]
            metrics = [dict(c["metrics"]) for c in contents]
            names = [f"site_{int(m.get('site-index', -1))}" for m in metrics]
            weights = [m["num-examples"] for m in metrics]
            kept, rejected = screen_updates(states, weights, names)
            self.rounds.append(
                {
                    "round": server_round,
                    "rejected": rejected,
                    "dropped": len(failed),
                    "sites": sorted(names),
                    "train_seconds": [m.get("train_seconds", 0.0) for m in metrics],
                    "bytes_up": int(sum(c["arrays"].count_bytes() for c in contents)),
                    "replies": [_describe(c) for c in contents],
                }
            )
            if not kept:
                return None, None
            merged = fedavg([states[i] for i in kept], [weights[i] for i in kept])
            loss = sum(weights[i] * metrics[i]["train_loss"] for i in kept) / sum(
                weights[i] for i in kept
            )
            return to_record(merged), MetricRecord({"train_loss": float(loss)})

        def aggregate_evaluate(
            self, server_round: int, replies: Iterable[Message]
        ) -> MetricRecord | None:
            replies = list(replies)
            merged = super().aggregate_evaluate(server_round, replies)
            dice = [float(m.content["metrics"]["val_dice"]) for m in replies if not m.has_error()]
            self.evaluated[server_round] = {
                **({k: float(v) for k, v in merged.items()} if merged else {}),
                **({"worst_site_dice": float(np.nanmin(dice))} if dice else {}),
            }
            return merged

    return Screened


def _describe(content: RecordDict) -> dict[str, Any]:
    """What one reply carried: array names and shapes, metric names and values."""
    arrays = content.array_records.get("arrays")
    return {
        "arrays": {k: list(arrays[k].shape) for k in arrays.keys()} if arrays else {},
        "metrics": {k: v for r in content.metric_records.values() for k, v in r.items()},
        "configs": sorted(k for r in content.config_records.values() for k in r.keys()),
    }


def server_app(
    plan: Plan, out: Path, settings: dict[str, Any], status: dict, on_round: Callable | None = None
) -> ServerApp:
    """The server's app; writes into ``out`` and ``status`` (``result`` or ``error``);
    ``on_round(round, row)`` after each round's checkpoint."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            status["result"] = _serve(grid, plan, out, settings, on_round)
        except BaseException as err:  # the simulation swallows it; run.py re-raises
            status["error"] = err

    return app


def deployed_server_app() -> ServerApp:
    """The server's app under the deployment runtime: the run config's ``results`` folder
    holds ``plans.json`` and ``federation.json`` (written by ``deploy.run_deployed``); the
    rounds' log is added to ``federation.json`` at the end. Errors propagate (Flower marks
    the run failed)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        out = Path(str(context.run_config["results"]))
        settings = json.loads((out / "federation.json").read_text(encoding="utf-8"))
        plan = Plans.from_json(out / "plans.json")[settings["configuration"]]
        result = _serve(grid, plan, out, settings, None)
        write_json_atomic(out / "federation.json", {**settings, "rounds_log": result["rounds"]})

    return app


def _serve(
    grid: Grid, plan: Plan, out: Path, settings: dict[str, Any], on_round: Callable | None
) -> dict[str, Any]:
    torch.manual_seed(settings["seed"])
    initial = {k: v.numpy() for k, v in build_model(plan).state_dict().items()}
    sites = settings["sites"]
    common = {
        "min_train_nodes": sites,
        "min_evaluate_nodes": sites,
        "min_available_nodes": settings.get("min_available", sites),
    }
    extra = {"proximal_mu": settings["mu"]} if settings["strategy"] == "fedprox" else {}
    strategy = _strategy_class(settings["strategy"])(**common, **extra)
    strategy.rounds = []
    fold = out / plan.configuration / "fold_0"
    rows: list[dict[str, Any]] = []
    started = [time.perf_counter()]

    def after_round(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round == 0:
            return None
        row = {**strategy.rounds[-1], "seconds": time.perf_counter() - started[0]}
        started[0] = time.perf_counter()
        evaluated = result_metrics(strategy, server_round)
        row.update(evaluated, bytes_down=arrays.count_bytes() * sites)
        rows.append(row)
        state = {k: torch.from_numpy(v.copy()) for k, v in from_record(arrays).items()}
        dice = evaluated.get("val_dice", float("nan"))
        best = max((r.get("val_dice", float("-inf")) for r in rows[:-1]), default=float("-inf"))
        contents = {
            "network_state": state,
            "plan": plan.to_dict(),
            "epoch": server_round,
            "step": server_round * settings["local_steps"],
            "best_metric": max(best, dice) if np.isfinite(dice) else best,
            "log": [{k: v for k, v in r.items() if k != "replies"} for r in rows],
            "fold": 0,
            "configuration": plan.configuration,
            "federated": {k: v for k, v in settings.items() if k != "sites_dir"},
        }
        save_checkpoint(fold / "checkpoint_latest.pt", **contents)
        if not np.isfinite(best) or not dice <= best:
            save_checkpoint(fold / "checkpoint_best.pt", **contents)
        with open(out / "rounds.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row, default=float) + "\n")
        if on_round is not None:
            on_round(server_round, row)
        return MetricRecord({k: v for k, v in evaluated.items() if isinstance(v, float)})

    strategy.evaluated = {}
    strategy.start(
        grid=grid,
        initial_arrays=to_record(initial),
        num_rounds=settings["rounds"],
        train_config=ConfigRecord({}),
        evaluate_fn=after_round,
    )
    return {"rounds": rows}


def result_metrics(strategy: FedAvg, server_round: int) -> dict[str, float]:
    """The aggregated evaluate metrics of ``server_round`` (set by ``aggregate_evaluate``)."""
    return dict(strategy.evaluated.get(server_round, {}))


client = client_app(None, None)  # the deployment runtime's apps ([tool.flwr.app.components])
server = deployed_server_app()
