// SPDX-License-Identifier: MIT
// Turns the loadgen reports of one bench/compare.sh run into bench/results/latest.json,
// a table on stdout and, for a full run, bench/RESULTS.md with a gnuplot PNG per workload.

import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const WORKLOADS = {
  stream_100: 'Streaming: 100 connections, turns of 200 deltas of 200 bytes',
  stream_1000: 'Streaming: 1000 connections, turns of 200 deltas of 200 bytes',
  large: 'Large events: 8 MiB "result" string in each turn',
  idle: 'Idle: one turn per connection, then the connections held open',
  churn: 'Churn: connect, one turn, close, repeated',
  tls: 'TLS upstream: the stream_100 turns, with each proxy dialing a TLS terminator in front of mock_upstream',
  tls_large: 'TLS upstream: the large turns, with each proxy dialing a TLS terminator in front of mock_upstream',
};
const TLS_WORKLOADS = ['tls', 'tls_large'];
const TARGETS = ['direct', 'wsrelay', 'nginx', 'haproxy'];
const MIB = 1024 * 1024;

const { values: args } = parseArgs({
  options: {
    mode: { type: 'string', default: 'full' },
    results: { type: 'string' },
    commands: { type: 'string' },
    notes: { type: 'string' },
    json: { type: 'string' },
    markdown: { type: 'string' },
    plots: { type: 'string' },
    configs: { type: 'string' },
    profile: { type: 'string' },
    elapsed: { type: 'string', default: '0' },
    invocation: { type: 'string', default: 'bench/compare.sh' },
  },
});
if (!args.results || !args.json) {
  console.error('report.mjs: --results DIR and --json FILE are required');
  process.exit(2);
}

function readLines(file) {
  if (!file || !fs.existsSync(file)) {
    return [];
  }
  return fs.readFileSync(file, 'utf8').split('\n').filter((line) => line.length > 0);
}

function commandOutput(command, argv) {
  const result = spawnSync(command, argv, { encoding: 'utf8' });
  if (result.error) {
    return null;
  }
  return `${result.stdout}${result.stderr}`.split('\n')[0].trim();
}

function machine() {
  const cpus = os.cpus();
  return {
    nproc: os.availableParallelism ? os.availableParallelism() : cpus.length,
    kernel: os.release(),
    cpu_model: cpus.length > 0 ? cpus[0].model : 'unknown',
    memory_mib: Math.round(os.totalmem() / MIB),
  };
}

function versions() {
  return {
    nginx: commandOutput('nginx', ['-v']),
    haproxy: commandOutput('haproxy', ['-v']),
    node: process.version,
  };
}

function gitCommit() {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain'], { encoding: 'utf8' }).trim() !== '';
    return dirty ? `${commit} with uncommitted changes` : commit;
  } catch {
    return 'unknown';
  }
}

// Selects the reported fields from one loadgen report; proxy figures are null for direct.
function summarize(report) {
  const proxy = report.proxy;
  const gib = report.bytes / (1024 * MIB);
  return {
    events_per_s: report.events_per_s,
    proxy_cpu_s_per_million_events: proxy ? proxy.cpu_s_per_million_events : null,
    p50_us: report.p50_us,
    p99_us: report.p99_us,
    p999_us: report.p999_us,
    proxy_rss_kib: proxy ? proxy.rss_kib : null,
    rss_kib_per_connection: proxy ? proxy.rss_kib_per_connection : null,
    errors: report.errors,
    bytes_per_s: report.bytes_per_s,
    connections_per_s: report.connections_per_s,
    proxy_cpu_s: proxy ? proxy.cpu_s : null,
    proxy_cpu_percent_of_core: proxy ? proxy.cpu_percent_of_core : null,
    proxy_cpu_s_per_gib: proxy && gib > 0 ? proxy.cpu_s / gib : null,
    window_s: report.window_s,
    turns_completed: report.turns_completed,
    turns_abandoned: report.turns_abandoned,
    pings_received_in_window: report.pings_received_in_window,
    close_timeouts: report.close_timeouts,
    stopped_by: report.stopped_by,
    client_cpu_s: report.client_cpu_s,
    upstream_cpu_s: report.upstream_cpu_s,
    machine_busy_cpu_s: report.machine_busy_cpu_s,
    other_cpu_s: report.other_cpu_s,
    error_kinds: report.error_kinds,
    terminator: null,
    loadgen: report,
  };
}

// Reads what compare.sh recorded about the TLS terminator during one run, or null.
function readTerminator(dir, workload, target) {
  const file = path.join(dir, `${workload}.${target}.terminator`);
  if (!fs.existsSync(file)) {
    return null;
  }
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    console.error(`report.mjs: ${file} is not valid JSON (${err.message}); skipped`);
    return null;
  }
}

function loadResults(dir) {
  const workloads = {};
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    const [workload, target] = file.replace(/\.json$/, '').split('.');
    const text = fs.readFileSync(path.join(dir, file), 'utf8');
    let report;
    try {
      report = JSON.parse(text);
    } catch (err) {
      console.error(`report.mjs: ${file} is not valid JSON (${err.message}); skipped`);
      continue;
    }
    workloads[workload] ??= { description: WORKLOADS[workload] ?? workload, targets: {} };
    workloads[workload].targets[target] = summarize(report);
    workloads[workload].targets[target].terminator = readTerminator(dir, workload, target);
  }
  const ordered = {};
  for (const name of Object.keys(WORKLOADS)) {
    if (workloads[name]) {
      ordered[name] = workloads[name];
    }
  }
  return ordered;
}

function format(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) {
    return '-';
  }
  return value.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

// Table columns: title, value, and the workloads the column applies to (all when absent).
const COLUMNS = [
  ['events/s', (r) => format(r.events_per_s)],
  ['CPU s/M events', (r) => format(r.proxy_cpu_s_per_million_events, 2)],
  ['CPU s/GiB', (r) => format(r.proxy_cpu_s_per_gib, 2), ['large', ...TLS_WORKLOADS]],
  ['p50 us', (r) => format(r.p50_us)],
  ['p99 us', (r) => format(r.p99_us)],
  ['p99.9 us', (r) => format(r.p999_us)],
  ['RSS KiB', (r) => format(r.proxy_rss_kib)],
  ['KiB/conn', (r) => format(r.rss_kib_per_connection, 1)],
  ['conn/s', (r) => format(r.connections_per_s), ['churn']],
  ['CPU % core', (r) => format(r.proxy_cpu_percent_of_core, 1)],
  ['Pings', (r) => format(r.pings_received_in_window), ['idle']],
  ['errors', (r) => format(r.errors)],
  ['terminator CPU s', (r) => format(r.terminator?.cpu_s, 2), TLS_WORKLOADS],
];

// Describes the upstream TLS handshakes the terminator logged for one run, for example
// "100 handshakes: 100 TLSv1.3 TLS_CHACHA20_POLY1305_SHA256 (82 resumed)".
function handshakeSummary(terminator) {
  if (!terminator) {
    return 'no terminator record';
  }
  const bySuite = new Map();
  let total = 0;
  for (const h of terminator.handshakes) {
    const key = `${h.protocol} ${h.suite}`;
    const entry = bySuite.get(key) ?? { count: 0, resumed: 0 };
    entry.count += h.count;
    entry.resumed += h.resumed ? h.count : 0;
    bySuite.set(key, entry);
    total += h.count;
  }
  const parts = [...bySuite].map(([key, e]) => `${e.count} ${key} (${e.resumed} resumed)`);
  return `${total} handshakes${parts.length > 0 ? `: ${parts.join(', ')}` : ''}`;
}

function columnApplies(column, workload) {
  return column[2] === undefined || column[2].includes(workload);
}

function cell(column, r, workload) {
  return columnApplies(column, workload) ? column[1](r) : '-';
}

function tableRows(workloads) {
  const rows = [];
  for (const [name, workload] of Object.entries(workloads)) {
    for (const target of TARGETS) {
      const r = workload.targets[target];
      if (r) {
        rows.push([name, target, ...COLUMNS.map((column) => cell(column, r, name))]);
      }
    }
  }
  return rows;
}

function printTable(workloads) {
  const header = ['workload', 'target', ...COLUMNS.map(([title]) => title)];
  const rows = tableRows(workloads);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells) =>
    cells.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ');
  console.log(line(header));
  for (const row of rows) {
    console.log(line(row));
  }
}

function markdownTable(name, workload) {
  const columns = COLUMNS.filter((column) => columnApplies(column, name));
  const header = ['target', ...columns.map(([title]) => title)];
  const lines = [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i ? '---:' : '---')).join('|')}|`];
  for (const target of TARGETS) {
    const r = workload.targets[target];
    if (r) {
      lines.push(`| ${target} | ${columns.map((column) => cell(column, r, name)).join(' | ')} |`);
    }
  }
  return lines.join('\n');
}

// Compares a measured value with a limit and describes by how much it misses, if it does.
function verdict(value, limit, lowerIsBetter, unit) {
  if (value === null || value === undefined || limit === null || limit === undefined) {
    return { met: null, text: 'not measured' };
  }
  const met = lowerIsBetter ? value <= limit : value >= limit;
  const comparison = `${format(value, 2)} ${unit} against ${format(limit, 2)} ${unit}`;
  if (met) {
    return { met, text: `met: ${comparison}` };
  }
  const miss = lowerIsBetter ? value - limit : limit - value;
  const percent = limit !== 0 ? `, or ${format((100 * miss) / limit, 0)}%` : '';
  return { met, text: `missed by ${format(miss, 2)} ${unit}${percent}: ${comparison}` };
}

function minOf(values) {
  const present = values.filter((v) => v !== null && v !== undefined);
  return present.length > 0 ? Math.min(...present) : null;
}

// Checks wsrelay against the cost targets that justify writing it in C on io_uring.
function targetChecks(workloads) {
  const checks = [];
  for (const name of ['stream_100', 'stream_1000']) {
    const t = workloads[name]?.targets ?? {};
    if (!t.wsrelay) {
      continue;
    }
    const cheapest = minOf([t.nginx?.proxy_cpu_s_per_million_events, t.haproxy?.proxy_cpu_s_per_million_events]);
    checks.push({
      workload: name,
      target: 'CPU per million events at most half of the cheaper of nginx and HAProxy',
      ...verdict(t.wsrelay.proxy_cpu_s_per_million_events, cheapest === null ? null : cheapest / 2, true, 's'),
    });
    checks.push({
      workload: name,
      target: 'p99 latency no worse than nginx or HAProxy',
      ...verdict(t.wsrelay.p99_us, minOf([t.nginx?.p99_us, t.haproxy?.p99_us]), true, 'us'),
    });
  }
  const idle = workloads.idle?.targets?.wsrelay;
  if (idle) {
    checks.push({
      workload: 'idle',
      target: 'at most 4 KiB of RSS per connection',
      ...verdict(idle.rss_kib_per_connection, 4, true, 'KiB'),
    });
    checks.push({
      workload: 'idle',
      target: 'under 1% of one core',
      ...verdict(idle.proxy_cpu_percent_of_core, 1, true, '%'),
    });
  }
  const churn = workloads.churn?.targets ?? {};
  if (churn.wsrelay) {
    checks.push({
      workload: 'churn',
      target: "at least nginx's connections per second",
      ...verdict(churn.wsrelay.connections_per_s, churn.nginx?.connections_per_s ?? null, false, 'conn/s'),
    });
  }
  return checks;
}

// Per workload, the two figures that matter most, plotted side by side: field, title, scale.
const CPU_PER_EVENT = ['proxy_cpu_s_per_million_events', 'proxy CPU s per million events (lower is better)', 1];
const P99_MS = ['p99_us', 'p99 latency in ms (lower is better)', 1e-3];
const PLOTS = {
  stream_100: [CPU_PER_EVENT, P99_MS],
  stream_1000: [CPU_PER_EVENT, P99_MS],
  large: [
    ['proxy_cpu_s_per_gib', 'proxy CPU s per GiB relayed (lower is better)', 1],
    ['bytes_per_s', 'MiB relayed per second (higher is better)', 1 / MIB],
  ],
  idle: [
    ['rss_kib_per_connection', 'proxy RSS KiB per connection (lower is better)', 1],
    ['proxy_cpu_percent_of_core', 'proxy CPU % of one core while idle (lower is better)', 1],
  ],
  churn: [
    ['connections_per_s', 'connections per second (higher is better)', 1],
    CPU_PER_EVENT,
  ],
  tls: [CPU_PER_EVENT, P99_MS],
  tls_large: [
    ['proxy_cpu_s_per_gib', 'proxy CPU s per GiB relayed (lower is better)', 1],
    ['bytes_per_s', 'MiB relayed per second (higher is better)', 1 / MIB],
  ],
};

function plotWorkload(name, workload, dir) {
  const panels = PLOTS[name];
  if (!panels) {
    return null;
  }
  const targets = TARGETS.filter((t) => workload.targets[t]);
  const dataFile = path.join(dir, `${name}.dat`);
  const rows = targets.map((t) => {
    const r = workload.targets[t];
    const values = panels.map(([field, , scale]) =>
      r[field] === null || r[field] === undefined ? 'NaN' : r[field] * scale,
    );
    return [t, ...values].join(' ');
  });
  fs.writeFileSync(dataFile, `${rows.join('\n')}\n`);

  const png = path.join(dir, `${name}.png`);
  const script = [
    'set terminal pngcairo size 1000,420 font "sans,10" noenhanced',
    `set output "${png}"`,
    `set multiplot layout 1,2 title "${name}: ${workload.description.replace(/"/g, "'")}"`,
    'set style data histograms',
    'set style histogram clustered gap 1',
    'set style fill solid 0.8 border -1',
    'set boxwidth 0.8',
    'set grid ytics',
    'set yrange [0:*]',
    // Headroom above the tallest bar for its label.
    'set offsets 0, 0, graph 0.12, 0',
    'set key off',
    ...panels.flatMap(([, title], i) => [
      `set title "${title}"`,
      `plot "${dataFile}" using ${i + 2}:xtic(1) lc rgb "#4477aa", ` +
        `"" using 0:${i + 2}:(sprintf($${i + 2} >= 1000 ? "%.0f" : "%.3g", $${i + 2})) with labels offset 0,0.8`,
    ]),
    'unset multiplot',
  ].join('\n');
  const result = spawnSync('gnuplot', [], { input: script, encoding: 'utf8' });
  fs.rmSync(dataFile, { force: true });
  if (result.error || result.status !== 0) {
    console.error(`report.mjs: gnuplot failed for ${name}: ${result.error?.message ?? result.stderr}`);
    return null;
  }
  return png;
}

// Names the user-space symbol with the most samples, as a one-line pointer into the profile.
function topUserSymbol(profile) {
  for (const line of profile.split('\n')) {
    const match = /^\s*([\d.]+)%\s+(\S+)\s+\[\.\]\s+(\S+)/.exec(line);
    if (match) {
      return [`The user-space symbol with the most samples is \`${match[3]}\` in ${match[2]} (${match[1]}%).`, ''];
    }
  }
  return [];
}

function fence(text, language = '') {
  return `\`\`\`${language}\n${text.trimEnd()}\n\`\`\``;
}

function writeMarkdown(file, result, commands, checks, plots) {
  const m = result.machine;
  const v = result.versions;
  const lines = [
    '# Benchmark results',
    '',
    `Last full run of \`make bench\`, written by bench/compare.sh on ${result.generated_at} ` +
      `(commit ${result.commit}). The run took ${result.elapsed_s} s.`,
    '',
    '## Machine',
    '',
    `- ${m.nproc} CPUs (nproc), ${m.cpu_model}, ${m.memory_mib} MiB of memory`,
    `- Linux ${m.kernel}`,
    `- ${v.nginx ?? 'nginx not found'}; ${v.haproxy ?? 'HAProxy not found'}; Node ${v.node}`,
    '- The load generator, mock_upstream and the proxy share these CPUs. Nothing is pinned.',
    '',
    '## How to read the numbers',
    '',
    '- Targets: `direct` is the load generator talking to mock_upstream with no proxy;',
    '  `wsrelay`, `nginx` and `haproxy` sit between the two.',
    '- The primary figure is the proxy\'s CPU time (user + system of all its processes and',
    '  threads, read from /proc/PID/stat at the start and end of the measured window) per',
    '  million events relayed. It holds when the client, the mock and the proxy compete for',
    '  the same cores, unlike throughput, which also measures the client and the mock.',
    '- The measured window opens once every connection is set up and closes when the last',
    '  turn ends (in the idle workload: after the idle time). Churn has no set-up, so its',
    '  window is the whole run.',
    '- Latency runs from the `ts_ns` that mock_upstream writes into each delta event when it',
    '  sends it to the moment the whole event reaches the load generator.',
    '- RSS is the sum of VmRSS over the proxy\'s processes, at its peak during the window.',
    '  KiB/conn is that peak minus the RSS before the first connection, divided by the',
    '  number of concurrent connections.',
    '- wsrelay also writes its usage ledger, one JSON line per turn. nginx and HAProxy',
    '  run with their access logs off.',
    '- latest.json also gives, per run, the CPU time of the load generator, of mock_upstream',
    '  and of the whole machine (/proc/stat) over the window. What none of them nor the proxy',
    '  used is `other_cpu_s`: other programs, or kernel threads such as ksoftirqd. Runs where',
    '  it passed 5% of a core are listed under Notes.',
    '- In `tls` and `tls_large` each proxy dials its upstream over TLS: an HAProxy in',
    '  `mode tcp` terminates TLS in front of mock_upstream, with a throwaway CA and an ECDSA',
    '  P-256 leaf certificate for 127.0.0.1, and lets each proxy get the TLS 1.3 suite it',
    '  offers first (`prefer-client-ciphers`). Each proxy verifies the certificate. The client',
    '  leg stays plain, because the load generator has no TLS client, and for the same reason',
    '  `direct` is not run. One mock_upstream and one terminator serve every target of the',
    '  workload, and each target starts fresh for each of the two parts.',
    '- In the TLS tables the proxy CPU columns include all of the proxy\'s TLS work:',
    '  handshakes with the terminator, decryption of what it relays downstream and',
    '  encryption of what it relays upstream. They exclude the terminator\'s CPU, which is',
    '  given on its own as `terminator CPU s`: user + system time of the terminator from the',
    '  start to the end of the load generator run, connection set-up included, so over a',
    '  longer span than the window. It is also part of `other_cpu_s` in latest.json.',
    '  Nothing is subtracted from any figure.',
    '- CPU s/GiB is the proxy CPU time over the window divided by the message payload the',
    '  load generator received in it (downstream only; the 30 KB requests are not counted).',
    '',
    '## Results',
    '',
  ];

  for (const [name, workload] of Object.entries(result.workloads)) {
    lines.push(`### ${name}`, '', workload.description + '.', '');
    if (workload.skipped) {
      lines.push(`Skipped: ${workload.skipped}`, '');
      continue;
    }
    lines.push(markdownTable(name, workload), '');
    if (TLS_WORKLOADS.includes(name)) {
      lines.push('Upstream TLS handshakes seen by the terminator during each run:', '');
      for (const target of TARGETS) {
        if (workload.targets[target]) {
          lines.push(`- ${target}: ${handshakeSummary(workload.targets[target].terminator)}`);
        }
      }
      lines.push('');
    }
    if (plots[name]) {
      lines.push(`![${name}](${path.relative(path.dirname(file), plots[name])})`, '');
    }
  }

  lines.push('## wsrelay against its targets', '');
  if (checks.length === 0) {
    lines.push('wsrelay was not measured in this run.', '');
  } else {
    lines.push('| workload | target | result |', '|---|---|---|');
    for (const c of checks) {
      lines.push(`| ${c.workload} | ${c.target} | ${c.text} |`);
    }
    lines.push('');
  }

  if (result.profile) {
    lines.push(
      '## Where wsrelay spends its CPU',
      '',
      'From a separate stream_1000 run with `perf record -e cpu-clock -F 999` attached to',
      'wsrelay, because hardware counters are not available on this machine. Symbols with at',
      'least 1% of the samples:',
      '',
      fence(result.profile),
      '',
      ...topUserSymbol(result.profile),
    );
  }

  if (result.notes.length > 0) {
    lines.push('## Notes', '', ...result.notes.map((n) => `- ${n}`), '');
  }

  lines.push(
    '## Commands',
    '',
    `The whole run: \`${args.invocation}\`. (\`make bench\` runs`,
    '`bench/compare.sh --build-dir BUILD_DIR`.) Each target was started fresh for each',
    'workload, behind a fresh mock_upstream, and stopped with SIGTERM after its run. The',
    'commands, in order, with programs from the build directory, configuration files as',
    'listed below, and $BENCH_KEY for the client key that the generated wsrelay',
    'configuration accepts:',
    '',
    fence(commands.join('\n'), 'sh'),
    '',
  );
  if (args.configs) {
    lines.push('## Generated configurations', '', 'Ports differ from run to run.', '');
    const configs = [
      ['wsrelay', 'wsrelay.cfg'],
      ['nginx', 'nginx.conf'],
      ['HAProxy', 'haproxy.cfg'],
      ['wsrelay, tls workload', 'wsrelay-tls.cfg'],
      ['nginx, tls workload', 'nginx-tls.conf'],
      ['HAProxy, tls workload', 'haproxy-tls.cfg'],
      ['TLS terminator (HAProxy), tls workload', 'terminator.cfg'],
    ];
    for (const [title, name] of configs) {
      const configFile = path.join(args.configs, name);
      if (fs.existsSync(configFile)) {
        lines.push(`### ${title}`, '', fence(fs.readFileSync(configFile, 'utf8')), '');
      }
    }
  }
  fs.writeFileSync(file, lines.join('\n'));
}

// Lists the runs in which other processes used more than 5% of a core, which skews them.
// In the TLS workloads the terminator is one of those processes.
function interferenceNotes(workloads) {
  const notes = [];
  for (const [name, workload] of Object.entries(workloads)) {
    for (const [target, r] of Object.entries(workload.targets)) {
      const share = r.window_s > 0 && r.other_cpu_s !== null ? r.other_cpu_s / r.window_s : 0;
      if (share > 0.05) {
        const others = r.terminator ? 'other processes, the TLS terminator among them,' : 'other processes';
        notes.push(
          `${name} ${target}: ${others} used ${format(100 * share, 0)}% of a core ` +
            'during the window, so its throughput and latency are less reliable.',
        );
      }
    }
  }
  return notes;
}

// Lists the runs that loadgen ended at its --duration with turns still open: their
// window includes the time those turns waited.
function stalledNotes(workloads) {
  const notes = [];
  for (const [name, workload] of Object.entries(workloads)) {
    for (const [target, r] of Object.entries(workload.targets)) {
      if (r.stopped_by === 'duration' && r.turns_abandoned > 0) {
        notes.push(
          `${name} ${target}: the load generator stopped at its --duration with ` +
            `${r.turns_abandoned} turn(s) still open after ${format(r.turns_completed)} completed, ` +
            'so the window and the rates include the time those turns waited.',
        );
      }
    }
  }
  return notes;
}

function main() {
  const workloads = loadResults(args.results);
  const notes = [...readLines(args.notes), ...stalledNotes(workloads), ...interferenceNotes(workloads)];
  const commands = readLines(args.commands);
  const tlsSkipped = notes.find((n) => n.startsWith('tls: skipped'));
  if (tlsSkipped && !workloads.tls) {
    workloads.tls = {
      description: WORKLOADS.tls,
      skipped: `${tlsSkipped.replace(/^tls: skipped, /, '')}.`,
      targets: {},
    };
  }

  const result = {
    generated_at: new Date().toISOString(),
    mode: args.mode,
    scaled_down: args.mode === 'quick',
    elapsed_s: Number(args.elapsed),
    commit: gitCommit(),
    machine: machine(),
    versions: versions(),
    notes,
    workloads,
  };
  if (args.profile && fs.existsSync(args.profile)) {
    result.profile = fs.readFileSync(args.profile, 'utf8');
  }
  const checks = targetChecks(workloads);
  result.wsrelay_targets = checks;

  fs.mkdirSync(path.dirname(args.json), { recursive: true });
  fs.writeFileSync(args.json, `${JSON.stringify(result, null, 2)}\n`);

  console.log('');
  if (args.mode === 'quick') {
    console.log('Quick run: counts and durations are scaled down, so these numbers are rough.');
  }
  printTable(workloads);
  for (const name of TLS_WORKLOADS) {
    for (const [target, r] of Object.entries(workloads[name]?.targets ?? {})) {
      console.log(`${name} ${target}: ${handshakeSummary(r.terminator)}`);
    }
  }
  for (const c of checks) {
    console.log(`wsrelay ${c.workload}: ${c.target}: ${c.text}`);
  }
  for (const n of notes) {
    console.log(`note: ${n}`);
  }
  console.log(`Wrote ${args.json}`);

  if (args.markdown) {
    const plots = {};
    fs.mkdirSync(args.plots, { recursive: true });
    for (const [name, workload] of Object.entries(workloads)) {
      if (!workload.skipped) {
        plots[name] = plotWorkload(name, workload, args.plots);
      }
    }
    writeMarkdown(args.markdown, result, commands, checks, plots);
    console.log(`Wrote ${args.markdown} and the plots in ${args.plots}`);
  }
}

main();
