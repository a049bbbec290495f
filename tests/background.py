"""Child-process work of the tests, started early and run beside the in-process tests.

Some tests spend nearly all their time waiting on child processes: the
reproduce scripts, trainings killed with SIGKILL and resumed, two-worker
training, the benchmark and load-test scripts, the fusion runs. On the 2
cores of CI the in-process tests keep about one core busy, so these children
run from the start of the session, in background threads, beside them. Their
tests come last (conftest.py moves their modules to the end of the session)
and assert on what the children returned and left on disk.

A test module takes part with a module-level function

    def early_jobs(jobs, request, items):
        jobs.submit("key", function, *args)

which conftest.py calls once, at the start of the session, when any of the
module's selected tests (`items`) uses the `early` fixture; `request` is the
session's fixture request (for session fixtures such as `demo_features`). A
test then reads a job's return value with `early("key")`: whatever the job
raised (a failed assertion, `pytest.fail`) is raised there instead.

The jobs start once all are submitted, the longest first (each says about
how long it runs), as long as their children fit: one child at a time while
in-process tests run (a third busy process on 2 cores costs more CPU time
than it saves), two while the session only waits for them. A job that runs
several children at once says so (`width`, 2 for two workers side by side);
one wider than the room runs alone.

A job starts its children with `jobs.popen` or `jobs.run` (Popen and
subprocess.run with the same arguments), so that a child still running when
the session ends (a test stopped it early with -x, say) is killed then. Jobs
only ever run child processes: Keras and TensorFlow state is per process,
and a background thread of the test process must not share it.
"""

import concurrent.futures
import subprocess
import threading
import time


class EarlyJobs:
    """Background jobs, longest first, in `busy_slots` or `idle_slots` children at once."""

    def __init__(self, busy_slots=1, idle_slots=2):
        self._condition = threading.Condition()
        self._busy_slots, self._idle_slots = busy_slots, idle_slots
        self._slots = busy_slots
        self._waiting = 0  # test-process threads waiting in `result`
        self._running = 0
        self._tickets = 0  # handed out by `submit`
        self._queue = []  # (-seconds, ticket) of the jobs not started yet
        self._started = False
        self._futures = {}
        self._processes = []
        self._closed = False
        self._created = time.monotonic()
        self.timings = {}  # key -> (start, end), seconds after creation; end None if running
        self.first_wait = None  # when a test first waited for a job, seconds after creation

    def submit(self, key, function, *args, seconds=0, width=1, **kwargs):
        """Queue `function(*args, **kwargs)` under `key`.

        `seconds`: about how long it runs on 2 quiet cores (the longest start
        first); `width`: how many children it runs at once.
        """
        with self._condition:
            if key in self._futures:
                raise ValueError(f"early job {key!r} submitted twice")
            future = concurrent.futures.Future()
            self._futures[key] = future
            place = (-seconds, self._tickets)
            self._tickets += 1
            self._queue.append(place)
        threading.Thread(
            target=self._run, args=(key, place, width, future, function, args, kwargs),
            name=f"early job {key}", daemon=True,
        ).start()
        return future

    def start(self):
        """Let the jobs start (the longest first, once all are submitted)."""
        with self._condition:
            self._started = True
            self._condition.notify_all()

    def _run(self, key, place, width, future, function, args, kwargs):
        def may_start():
            if self._closed:
                return True
            fits = not self._running or self._running + width <= self._slots
            return self._started and place == min(self._queue) and fits

        with self._condition:
            self._condition.wait_for(may_start)
            self._queue.remove(place)
            self._condition.notify_all()
            if self._closed:
                future.set_exception(RuntimeError("the test session ended before this job ran"))
                return
            self._running += width
            self.timings[key] = (time.monotonic() - self._created, None)
        try:
            value = function(*args, **kwargs)
        except BaseException as error:  # pytest.fail raises a BaseException
            future.set_exception(error)
        else:
            future.set_result(value)
        finally:
            with self._condition:
                self._running -= width
                self.timings[key] = (self.timings[key][0], time.monotonic() - self._created)
                self._condition.notify_all()

    def result(self, key):
        """The return value of job `key`, waiting for it (and raising what it raised)."""
        try:
            future = self._futures[key]
        except KeyError:
            raise KeyError(
                f"no early job {key!r}: its module's early_jobs() did not submit it "
                f"(does the test use the `early` fixture?)"
            ) from None
        if not future.done():
            with self._condition:
                if self.first_wait is None:
                    self.first_wait = time.monotonic() - self._created
                self._waiting += 1
                self._slots = self._idle_slots
                self._condition.notify_all()
            try:
                future.result()
            except BaseException:
                pass
            finally:
                with self._condition:
                    self._waiting -= 1
                    if not self._waiting:
                        self._slots = self._busy_slots
        return future.result()

    def popen(self, *args, **kwargs):
        """`subprocess.Popen(*args, **kwargs)`, killed at the end of the session if still running."""
        with self._condition:
            if self._closed:
                raise RuntimeError("the test session has ended")
            process = subprocess.Popen(*args, **kwargs)
            self._processes.append(process)
        return process

    def run(self, args, timeout=None, capture_output=False, **kwargs):
        """`subprocess.run(args, ...)` through `popen` (without `check` and `input`)."""
        if capture_output:
            kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        process = self.popen(args, **kwargs)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)

    def close(self):
        """Start no more jobs; kill the children still running."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
            processes = list(self._processes)
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
