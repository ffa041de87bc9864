"""Locust for ``make loadtest-knee``: the locustfile's :class:`AgentUser`, stepped up by a
``LoadTestShape`` until a step's p99 or error rate passes the SLO.

Run through ``loadtests/knee.py`` (which checks the stack, reads the step log, and writes the
report and picture), or directly:

    locust -f loadtests/locustfile_knee.py --headless --host http://127.0.0.1:8000 \\
        --knee-start-users 4 --knee-step-users 4 --knee-step-s 30 --knee-max-users 128 \\
        --knee-slo-p99-ms 2000 --knee-log knee-steps.json

The users are the locustfile's, with its environment variables (API key, think time, ...).
After each step the log (``--knee-log``) is rewritten with every finished step's stats.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from locust import LoadTestShape, events
from locust.env import Environment

try:
    from loadtests.knee_steps import RUN_ROUTE, Record, Slo, Stepper, StepPlan
    from loadtests.locustfile import AgentUser
except ModuleNotFoundError:  # locust -f loadtests/locustfile_knee.py from elsewhere
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from loadtests.knee_steps import RUN_ROUTE, Record, Slo, Stepper, StepPlan
    from loadtests.locustfile import AgentUser

# Locust runs every user class and the one shape class this module holds.
__all__ = ["AgentUser", "KneeShape"]


def _knee_options(parser: Any) -> None:
    plan, slo = StepPlan(), Slo()  # their defaults are the options' defaults

    def option(name: str, kind: type, default: Any, text: str) -> None:
        parser.add_argument(name, type=kind, default=default, help=text, include_in_web_ui=False)

    option("--knee-start-users", int, plan.start_users, "users of the first step")
    option("--knee-step-users", int, plan.step_users, "users added at each step")
    option("--knee-step-s", float, plan.step_s, "seconds per step")
    option("--knee-max-users", int, plan.max_users, "users of the last step")
    option("--knee-spawn-rate", float, None, "users started per second (default: ~1 s/step)")
    option("--knee-slo-p99-ms", float, slo.p99_ms, "a step's runs p99 above it ends the test")
    option("--knee-max-error-rate", float, slo.max_error_rate, "a step's errors above it too")
    option("--knee-sample-s", float, 5.0, "width of the picture's windows")
    option("--knee-log", str, "knee-steps.json", "where each finished step is written")


def _listen(environment: Environment, **_: Any) -> None:
    shape = environment.shape_class
    if isinstance(shape, KneeShape):
        environment.events.request.add_listener(shape.on_request)


class KneeShape(LoadTestShape):
    """Steps users up per :class:`Stepper`; stops once a step breaks the SLO."""

    def __init__(self) -> None:
        super().__init__()
        self.started_at = time.time()
        self._stepper: Stepper | None = None
        self._written = -1  # steps in the log file so far
        self._log_path = Path("knee-steps.json")

    def reset_time(self) -> None:
        super().reset_time()
        self.started_at = time.time()

    def stepper(self) -> Stepper:
        # Built on first use: the parsed options exist only once Locust has a runner.
        if self._stepper is None:
            assert self.runner is not None
            options = self.runner.environment.parsed_options
            assert options is not None  # Locust parsed its command line before any tick
            plan = StepPlan(
                start_users=options.knee_start_users,
                step_users=options.knee_step_users,
                step_s=options.knee_step_s,
                max_users=options.knee_max_users,
                spawn_rate=options.knee_spawn_rate,
            )
            slo = Slo(p99_ms=options.knee_slo_p99_ms, max_error_rate=options.knee_max_error_rate)
            self._stepper = Stepper(plan, slo, sample_s=options.knee_sample_s)
            self._log_path = Path(options.knee_log)
        return self._stepper

    def tick(self) -> tuple[int, float] | None:
        stepper = self.stepper()
        users = stepper.tick(self.get_run_time())
        if len(stepper.steps) != self._written or users is None:
            self._written = len(stepper.steps)
            # Rewritten whole after each step, so a run cut short still leaves its steps;
            # through a rename, so the driver never reads half a file.
            partial = self._log_path.with_suffix(".partial")
            partial.write_text(stepper.log(self.started_at).model_dump_json(indent=1))
            partial.replace(self._log_path)
        return None if users is None else (users, stepper.plan.rate)

    def on_request(self, name: str, response_time: float, exception: Any, **_: Any) -> None:
        failed = exception is not None
        self.stepper().record(Record(self.get_run_time(), response_time, failed, name == RUN_ROUTE))


# Registered at import, as Locust's decorators would: Locust imports this file before parsing.
events.init_command_line_parser.add_listener(_knee_options)
events.init.add_listener(_listen)
