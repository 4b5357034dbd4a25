#!/usr/bin/python3
"""web_test -- emq-web against live processes.

A real emq-router, emq-jobmanager and emq-scheduler on ipc:// in a fresh
directory, emq-web on a free loopback port, real jobs (some that die). Then:

  metrics    /metrics read by Prometheus's own text parser
             (python3-prometheus-client), and the figures checked against
             what the jobs did
  dashboard  every page loaded in headless Chromium (selenium, Debian's
             chromium-driver); a dead job's Retry clicked and the job seen
             to run; screenshots kept in $BUILD/tests/artifacts/
  auth       with a password every request needs it; CURVE without one is
             refused at start

Run by tests/run (make check, make sanitize) with Debian's /usr/bin/python3:
    BUILD=build /usr/bin/python3 tests/web_test.py [-t NAME]... [-k] [-v]
    ... --screenshot docs/dashboard.png --load 60   (the docs picture)
Prints one line per test and "N passed, N failed" last.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
import base64

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get('BUILD', 'build'))
BIN = os.path.join(BUILD, 'bin')
SCALE = float(os.environ.get('EMQ_TEST_SCALE', '1'))
PLUGIN = 'libemq_examples.so'


class Failure(Exception):
    pass


def require(cond, message):
    if not cond:
        raise Failure(message)


def wait_for(what, predicate, timeout=10.0, step=0.1):
    """Polls predicate until it returns a true value (returned) or fails."""
    deadline = time.monotonic() + timeout * SCALE
    last = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (Failure, OSError, ValueError, KeyError) as e:
            last = e
        time.sleep(step)
    raise Failure('timed out waiting for %s%s' % (what, ': %s' % last if last else ''))


class Rig:
    """The processes of one test, in one directory, all stopped at the end."""

    def __init__(self, name, keep, verbose):
        self.dir = tempfile.mkdtemp(prefix='emq-web-%s-' % name)
        self.keep, self.verbose = keep, verbose
        self.procs = []
        self.killed = set()  # tags of processes a test killed on purpose
        self.env = dict(os.environ, EVENTMQ_CONFIG_FILE='/dev/null')
        for var in ('EMQ_BROKER_ADDR', 'EMQ_ADMIN_ADDR', 'EMQ_EVENTS_ADDR'):
            self.env.pop(var, None)
        self.frontend = 'ipc://%s/frontend' % self.dir
        self.backend = 'ipc://%s/backend' % self.dir
        self.admin = 'ipc://%s/admin' % self.dir
        self.port = None

    def spawn(self, tag, program, *args):
        log = open(os.path.join(self.dir, tag + '.log'), 'w')
        proc = subprocess.Popen([os.path.join(BIN, program)] + list(args), cwd=self.dir,
                                stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                start_new_session=True)
        self.procs.append((tag, proc))
        return proc

    def log(self, tag):
        with open(os.path.join(self.dir, tag + '.log')) as f:
            return f.read()

    def cli(self, *args, check=True, timeout=20):
        r = subprocess.run([os.path.join(BIN, 'emq-cli'), '--addr', self.frontend,
                            '--admin-addr', self.admin] + list(args), cwd=self.dir,
                           env=self.env, capture_output=True, text=True,
                           timeout=timeout * SCALE)
        if check and r.returncode != 0:
            raise Failure('emq-cli %s: exit %d: %s' % (' '.join(args), r.returncode,
                                                        r.stderr.strip()))
        return r

    def status(self):
        return json.loads(self.cli('status', '--json').stdout)

    def start(self, scheduler=False, web_args=()):
        hb = ['--heartbeat-interval', '0.2', '--heartbeat-timeout', '0.5',
              '--heartbeat-liveness', '3']
        self.spawn('router', 'emq-router', '--frontend', self.frontend, '--backend',
                   self.backend, '--admin', self.admin, '--data-dir', self.dir + '/data',
                   '--fsync', 'off', '--retry-backoff', '0.05', *hb)
        wait_for('the router', lambda: self.cli('status', check=False).returncode == 0)
        self.spawn('jm', 'emq-jobmanager', '--backend-addr', self.backend, '--queues',
                   '[[10,"default"],[5,"images"]]', '--concurrent-jobs', '3', '--plugin-dir',
                   os.path.join(BUILD, 'plugins'), '--exec-allow', '/bin/*', '--name', 'jm',
                   *hb)
        wait_for('the job manager', lambda: self.status().get('job_managers') == 1)
        if scheduler:
            self.spawn('scheduler', 'emq-scheduler', '--router', self.frontend, '--admin',
                       self.admin, '--data-dir', self.dir + '/sched', *hb)
            wait_for('the scheduler', lambda: json.loads(self.cli(
                'schedulers', '--json').stdout).get('connected_schedulers'))
        self.web = self.start_web(*web_args)

    def start_web(self, *args, tag='web'):
        self.spawn(tag, 'emq-web', '--listen', '127.0.0.1:0', '--admin-addr', self.admin,
                   '--addr', self.frontend, '--static-dir', os.path.join(ROOT, 'web', 'static'),
                   '--sample-interval', '0.5', *args)

        def port():
            for line in self.log(tag).splitlines():
                if 'listening on http://127.0.0.1:' in line:
                    return int(line.split('http://127.0.0.1:')[1].split('/')[0])
        self.port = wait_for('emq-web to listen', port)
        return 'http://127.0.0.1:%d' % self.port

    def get(self, path, auth=None, method='GET', headers=None):
        request = urllib.request.Request(self.web + path, method=method,
                                         headers=dict(headers or {}))
        if auth:
            token = base64.b64encode(auth.encode()).decode()
            request.add_header('Authorization', 'Basic ' + token)
        try:
            with urllib.request.urlopen(request, timeout=10 * SCALE) as r:
                return r.status, r.read().decode(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), dict(e.headers)

    def kill(self, tag):
        """SIGKILLs a process on purpose (its exit is not checked)."""
        self.killed.add(tag)
        for t, proc in self.procs:
            if t == tag:
                os.killpg(proc.pid, signal.SIGKILL)

    def stop(self, failed):
        """Stops every process; returns the problems seen: a process that did
        not exit 0 after SIGTERM, a sanitizer report in a log."""
        problems = []
        for tag, proc in reversed(self.procs):
            if proc.poll() is not None and tag not in self.killed:
                problems.append('%s exited early with status %s' % (tag, proc.returncode))
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for tag, proc in reversed(self.procs):
            try:
                proc.wait(10 * SCALE)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                problems.append('%s did not stop on SIGTERM' % tag)
            if tag not in self.killed and proc.returncode not in (0, -signal.SIGTERM):
                problems.append('%s exited with status %s' % (tag, proc.returncode))
            if tag not in self.killed and any(m in self.log(tag) for m in
                                              ('Sanitizer', 'runtime error:')):
                problems.append('%s: sanitizer report in its log' % tag)
        problems = sorted(set(problems))
        failed = failed or bool(problems)
        if failed or self.verbose:
            for tag, _ in self.procs:
                text = self.log(tag).splitlines()[-20:]
                print('    --- %s.log' % tag)
                for line in text:
                    print('    | ' + line)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print('    kept %s' % self.dir)
        return problems


def submit_mix(rig, ok=6, dead=1):
    """ok jobs that succeed, dead jobs that fail twice and die; returns the
    dead ones' msgids."""
    for i in range(ok):
        rig.cli('submit', '--wait', 'run', PLUGIN, 'upper', '"job %d"' % i)
    rig.cli('submit', '--queue', 'images', '--wait', 'exec', '--', '/bin/echo', 'img')
    ids = [rig.cli('submit', '--retries', '1', 'run', PLUGIN, 'fail').stdout.strip()
           for _ in range(dead)]
    wait_for('dead jobs', lambda: rig.status()['store']['dead'] >= dead)
    return ids


# ---------------------------------------------------------------------------
# metrics

def test_metrics(rig):
    from prometheus_client.parser import text_string_to_metric_families
    rig.start()
    submit_mix(rig, ok=6, dead=1)
    # The sampler runs every 0.5 s: wait for a sample that has every job.
    def sampled():
        code, text, headers = rig.get('/metrics')
        require(code == 200, '/metrics: HTTP %d' % code)
        return (text, headers) if 'emq_queue_dead{queue="default"} 1' in text else None
    text, headers = wait_for('/metrics with the dead job', sampled)
    require(headers.get('Content-Type', '').startswith('text/plain; version=0.0.4'),
            'content type %s' % headers.get('Content-Type'))

    # Prometheus's parser; it raises on what it cannot read.
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # The format's rules the parser does not insist on: one TYPE per
    # family, declared before its samples, families not interleaved.
    declared, seen_family, order = set(), None, []
    for line in text.splitlines():
        if line.startswith('# TYPE '):
            name = line.split()[2]
            require(name not in declared, 'TYPE %s twice' % name)
            declared.add(name)
            order.append(name)
        elif line and not line.startswith('#'):
            sample = line.split('{')[0].split(' ')[0]
            require(any(sample == n or sample.startswith(n + '_') for n in order[-1:]),
                    'sample %s outside its family (%s)' % (sample, order[-1:]))

    def value(family, sample_name, **labels):
        require(family in families, 'no family %s' % family)
        for s in families[family].samples:
            if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        raise Failure('no sample %s%s' % (sample_name, labels))

    expect_types = {
        'emq_up': 'gauge', 'emq_queue_waiting': 'gauge', 'emq_queue_running': 'gauge',
        'emq_queue_scheduled': 'gauge', 'emq_queue_retrying': 'gauge', 'emq_queue_dead': 'gauge',
        'emq_jobs_processed': 'counter', 'emq_jobs_failed': 'counter',
        'emq_job_wait_seconds': 'histogram', 'emq_job_run_seconds': 'histogram',
        'emq_store_commit_seconds': 'histogram', 'emq_jobmanager_free_slots': 'gauge',
        'emq_jobmanager_workers': 'gauge', 'emq_jobmanager_workers_busy': 'gauge',
        'emq_router_resident_memory_bytes': 'gauge', 'emq_router_cpu_seconds': 'counter',
        'emq_router_open_fds': 'gauge', 'emq_router_start_time_seconds': 'gauge',
        'process_resident_memory_bytes': 'gauge',
    }
    for name, kind in expect_types.items():
        require(name in families, 'no family %s' % name)
        require(families[name].type == kind, '%s is %s, not %s' % (name, families[name].type, kind))

    require(value('emq_up', 'emq_up') == 1, 'emq_up is not 1')
    require(value('emq_jobs_processed', 'emq_jobs_processed_total', queue='default') == 6,
            'processed in default is not 6')
    require(value('emq_jobs_processed', 'emq_jobs_processed_total', queue='images') == 1,
            'processed in images is not 1')
    require(value('emq_jobs_failed', 'emq_jobs_failed_total', queue='default') == 1,
            'failed in default is not 1')
    require(value('emq_queue_dead', 'emq_queue_dead', queue='default') == 1, 'dead is not 1')
    # Wait times: 6 ok + 2 attempts of the dead job in default.
    require(value('emq_job_wait_seconds', 'emq_job_wait_seconds_count', queue='default') == 8,
            'wait count in default is not 8')
    require(value('emq_job_run_seconds', 'emq_job_run_seconds_count', queue='default') == 8,
            'run count in default is not 8')
    for family in ('emq_job_wait_seconds', 'emq_job_run_seconds'):
        buckets = [(float(s.labels['le']), s.value) for s in families[family].samples
                   if s.name.endswith('_bucket') and s.labels['queue'] == 'default']
        require(buckets[-1][0] == float('inf'), '%s: no +Inf bucket' % family)
        require(all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])),
                '%s buckets are not cumulative' % family)
        require(buckets[-1][1] == 8, '%s +Inf is not the count' % family)
    require(value('emq_store_commit_seconds', 'emq_store_commit_seconds_count') > 0,
            'no store commits counted')
    jm = [s for s in families['emq_jobmanager_workers'].samples]
    require(len(jm) == 1 and jm[0].labels['jobmanager'].startswith('jm-') and jm[0].value == 3,
            'workers of the job manager: %s' % jm)
    require(value('emq_router_resident_memory_bytes', 'emq_router_resident_memory_bytes') > 1e6,
            'router RSS too small')
    start = value('emq_router_start_time_seconds', 'emq_router_start_time_seconds')
    require(abs(start - time.time()) < 600, 'router start time %s' % start)

    # The router gone: emq_up 0, the rest of its figures gone with it.
    rig.kill('router')
    text = wait_for('emq_up 0', lambda: (lambda t: t if 'emq_up 0' in t else None)(
        rig.get('/metrics')[1]))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    require('emq_queue_waiting' not in families, 'queue figures of a router that is gone')
    require(families['emq_web_sample_errors'].samples[0].value >= 1, 'no sample error counted')


# ---------------------------------------------------------------------------
# dashboard

def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = '/usr/bin/chromium'
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                '--window-size=1400,1000', '--no-first-run', '--disable-extensions'):
        options.add_argument(arg)
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    return webdriver.Chrome(service=Service('/usr/bin/chromedriver'), options=options)


def fresh(driver, read):
    """read(view element), retried while the dashboard's 2 s redraw makes
    the elements it found stale."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    for _ in range(50):
        try:
            return read(driver.find_element(By.ID, 'view'))
        except StaleElementReferenceException:
            time.sleep(0.05)
    raise Failure('the page kept changing under the test')


def open_view(driver, rig, view, marker, timeout=10):
    """Loads #/view and waits until the drawn view contains marker."""
    driver.get(rig.web + '/#/' + view)
    name = view.split('/')[0]
    wait_for('page %s showing %r' % (view, marker), lambda: fresh(
        driver, lambda root: root.get_attribute('data-view') == name and marker in root.text),
        timeout)


def click(driver, css):
    """Clicks the element css finds; the dashboard redraws every 2 s, so an
    element found just before a redraw is stale: find it again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def clicked():
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
            return True
        except StaleElementReferenceException:
            return False
    wait_for('a click on %s' % css, clicked, 5, 0.05)


def js_errors(driver):
    return [e for e in driver.get_log('browser') if e.get('level') == 'SEVERE']


def test_dashboard(rig, screenshot=None, load=0):
    from selenium.webdriver.common.by import By
    rig.start(scheduler=True)
    flag = os.path.join(rig.dir, 'flag')
    # A job that fails until the flag file exists: dead now, fine on retry.
    dead_id = rig.cli('submit', '--retries', '1', 'exec', '--', '/bin/sh', '-c',
                      'test -e %s || { echo no flag >&2; exit 3; }' % flag).stdout.strip()
    submit_mix(rig, ok=4, dead=2)
    rig.cli('schedule', '--name', 'tick', '--every', '1h', 'exec', '--', '/bin/echo', 'tick')
    load_proc = None
    if load:
        # Background load for the docs' screenshot: a job stream for `load` seconds.
        load_proc = subprocess.Popen(['/bin/sh', '-c',
            'end=$(( $(date +%%s) + %d )); while [ $(date +%%s) -lt $end ]; do '
            '%s --addr %s demo --jobs 200 >/dev/null 2>&1; '
            '%s --addr %s submit --retries 1 run %s fail >/dev/null 2>&1; '
            '%s --addr %s submit run %s sleep 0.5 >/dev/null 2>&1 || true; done'
            % (load, os.path.join(BIN, 'emq-cli'), rig.frontend,
               os.path.join(BIN, 'emq-cli'), rig.frontend, PLUGIN,
               os.path.join(BIN, 'emq-cli'), rig.frontend, PLUGIN)],
            env=rig.env, cwd=rig.dir)
    artifacts = os.path.join(BUILD, 'tests', 'artifacts')
    os.makedirs(artifacts, exist_ok=True)
    driver = browser()
    try:
        # Overview: the cards and three plots drawn from the history.
        open_view(driver, rig, 'overview', 'done / s')
        wait_for('plots with points', lambda: len(driver.find_elements(
            By.CSS_SELECTOR, '#view svg polyline.series')) >= 3, 15)
        require(fresh(driver, lambda root: len(root.find_elements(By.CSS_SELECTOR, '.plot > svg')))
                == 3, 'not three plots')
        require('router up' in driver.find_element(By.ID, 'router-state').text,
                'router state not shown as up')
        driver.save_screenshot(os.path.join(artifacts, 'dashboard-overview.png'))

        open_view(driver, rig, 'queues', 'images')
        rows = fresh(driver, lambda root: [r.text for r in root.find_elements(By.CSS_SELECTOR,
                                                                             'tbody tr')])
        require(any(r.startswith('default') for r in rows), 'no default queue row: %s' % rows)
        require(fresh(driver, lambda root: root.find_element(
            By.CSS_SELECTOR, 'button[data-queue="default"]').text) == 'Pause', 'no pause button')
        # Pause and resume a queue from its buttons; the router says so.
        paused = lambda want: rig.status()['queues']['images'].get('paused') == want
        click(driver, '#view button.pause[data-queue="images"]')
        wait_for('images paused', lambda: paused(True))
        open_view(driver, rig, 'queues', 'paused')
        click(driver, '#view button.resume[data-queue="images"]')
        wait_for('images resumed', lambda: paused(False))

        open_view(driver, rig, 'jobmanagers', 'jm-')
        # Quiet the job manager, then let it take jobs again.
        def quiet(want):
            jms = json.loads(rig.cli('workers', '--json').stdout)['connected_workers']
            return all(jm.get('quiet') == want for jm in jms.values()) and jms
        click(driver, '#view button.quiet')
        wait_for('the job manager quiet', lambda: quiet(True))
        open_view(driver, rig, 'jobmanagers', 'quiet')
        click(driver, '#view button.unquiet')
        wait_for('the job manager taking jobs again', lambda: quiet(False))
        require('default (10)' in fresh(driver, lambda root: root.text),
                'job manager queues not shown')

        open_view(driver, rig, 'schedules', 'tick')
        require(fresh(driver, lambda root: root.find_element(By.ID, 'leader').text)
                not in ('', 'none'), 'no leader shown')

        # Jobs: the dead ones, with their errors; Retry on the one that can
        # now succeed.
        # A delayed job is listed, and cancelled from its row.
        later = rig.cli('submit', '--delay', '1h', 'run', PLUGIN, 'noop').stdout.strip()
        open_view(driver, rig, 'jobs', later)
        click(driver, '#view button.cancel[data-msgid="%s"]' % later)
        wait_for('the delayed job cancelled', lambda: later not in rig.get(
            '/api/jobs?state=scheduled')[1])
        open_view(driver, rig, 'jobs', dead_id)
        text = fresh(driver, lambda root: root.text)
        require('no flag' in text, 'dead job error not shown')
        require('failed on purpose' in text, 'other dead jobs not shown')
        driver.save_screenshot(os.path.join(artifacts, 'dashboard-jobs.png'))
        open(flag, 'w').close()
        click(driver, '#view button.retry[data-msgid="%s"]' % dead_id)
        wait_for('the retry notice', lambda: 'retry' in driver.find_element(By.ID, 'notice').text
                 and 'done' in driver.find_element(By.ID, 'notice').text)
        # It ran: its result is now ok, and it is no longer dead.
        r = rig.cli('result', dead_id, '--wait', '--wait-timeout', '20', '--json')
        require(json.loads(r.stdout)['status'] == 'ok', 'retried job: %s' % r.stdout)
        dead = json.loads(rig.get('/api/dead')[1])['dead']
        require(dead_id not in [d['msgid'] for d in dead], 'retried job still dead')

        # Delete one of the others.
        others = [d['msgid'] for d in dead]
        require(len(others) == 2, 'dead jobs left: %s' % others)
        open_view(driver, rig, 'jobs', others[0])
        click(driver, '#view button.delete[data-msgid="%s"]' % others[0])
        wait_for('the deleted job to leave the dead list', lambda: others[0] not in [
            d['msgid'] for d in json.loads(rig.get('/api/dead')[1])['dead']])
        wait_for('the page without it', lambda: fresh(
            driver, lambda root: others[0] not in root.text and others[1] in root.text))

        # Its page shows the outcome.
        open_view(driver, rig, 'job/' + dead_id, 'ok')
        require('wall_us=' in fresh(driver, lambda root: root.text), 'job page has no usage')
        driver.save_screenshot(os.path.join(artifacts, 'dashboard-job.png'))
        # An unknown job: a clear message, not a broken page.
        open_view(driver, rig, 'job/no-such-job', 'no such job')
        errors = js_errors(driver)
        # The 404 of the unknown job is logged by Chromium as a failed load.
        errors = [e for e in errors if '/api/job?id=no-such-job' not in e.get('message', '')]
        require(not errors, 'JavaScript errors: %s' % errors)
        if screenshot:
            time.sleep(load * 0.9)
            open_view(driver, rig, 'overview', 'done / s')
            driver.save_screenshot(screenshot)
    finally:
        driver.quit()
        if load_proc:
            load_proc.kill()
            load_proc.wait()


# ---------------------------------------------------------------------------
# auth and bad input

def test_auth(rig):
    secret = os.path.join(rig.dir, 'password')
    with open(secret, 'w') as f:
        f.write('s3cret\n')
    rig.start(web_args=('--password-file', secret))
    for path in ('/', '/metrics', '/api/overview', '/api/dead'):
        code, _, headers = rig.get(path)
        require(code == 401, '%s without a password: HTTP %d' % (path, code))
        require('Basic' in headers.get('WWW-Authenticate', ''), 'no basic auth challenge')
        require(rig.get(path, auth='emq:wrong')[0] == 401, '%s with a wrong password' % path)
        require(rig.get(path, auth='emq:s3cret')[0] == 200, '%s with the password' % path)
    # Actions need the header as well as the password; bad input is refused.
    code, body, _ = rig.get('/api/dead/purge', auth='emq:s3cret', method='POST')
    require(code == 403 and 'X-EMQ-Request' in body, 'action without header: %d %s' % (code, body))
    hdr = {'X-EMQ-Request': '1'}
    code, body, _ = rig.get('/api/dead/retry?id=nosuchjob', auth='emq:s3cret', method='POST',
                            headers=hdr)
    require(code == 404, 'retry of an unknown job: %d %s' % (code, body))
    code, body, _ = rig.get('/api/dead/retry?id=' + 'x' * 300, auth='emq:s3cret', method='POST',
                            headers=hdr)
    require(code == 400, 'retry of an oversized id: %d %s' % (code, body))
    for path in ('/static/../web_test.py', '/static/.hidden', '/static/x.exe', '/nope'):
        require(rig.get(path, auth='emq:s3cret')[0] == 404, '%s is not refused' % path)
    require(rig.get('/api/overview', auth='emq:s3cret', method='DELETE')[0] == 405,
            'DELETE is not refused')
    # CURVE without a password: refused at start, exit 3.
    proc = subprocess.run([os.path.join(BIN, 'emq-web'), '--listen', '127.0.0.1:0',
                           '--curve-server-key', 'x' * 40], env=rig.env, capture_output=True,
                          text=True, timeout=10 * SCALE)
    require(proc.returncode == 3 and 'set a password' in proc.stderr,
            'CURVE without a password: exit %d %s' % (proc.returncode, proc.stderr))
    # A bad listen address: a usage error.
    proc = subprocess.run([os.path.join(BIN, 'emq-web'), '--listen', 'localhost'],
                          env=rig.env, capture_output=True, text=True, timeout=10 * SCALE)
    require(proc.returncode == 2 and 'IPv4' in proc.stderr,
            'bad --listen: exit %d %s' % (proc.returncode, proc.stderr))


TESTS = [('metrics', test_metrics), ('dashboard', test_dashboard), ('auth', test_auth)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('-t', action='append', default=[])
    parser.add_argument('-k', action='store_true', help='keep the test directories')
    parser.add_argument('-v', action='store_true')
    parser.add_argument('--screenshot', help='also save the overview under load here')
    parser.add_argument('--load', type=int, default=40, help='seconds of load for --screenshot')
    args = parser.parse_args()
    passed = failed = 0
    for name, fn in TESTS:
        if args.t and name not in args.t:
            continue
        rig = Rig(name, args.k, args.v)
        started = time.monotonic()
        ok = False
        try:
            if fn is test_dashboard and args.screenshot:
                fn(rig, os.path.abspath(args.screenshot), args.load)
            else:
                fn(rig)
            ok = True
        except Failure as e:
            print('    FAIL %s: %s' % (name, e))
        except Exception:
            print('    FAIL %s:' % name)
            traceback.print_exc(file=sys.stdout)
        finally:
            problems = rig.stop(not ok)
            if ok and problems:
                print('    FAIL %s: %s' % (name, '; '.join(problems)))
                ok = False
        print('%-4s %-22s (%.2f s)' % ('ok' if ok else 'FAIL', name, time.monotonic() - started))
        sys.stdout.flush()
        passed += ok
        failed += not ok
    print('%d passed, %d failed' % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
