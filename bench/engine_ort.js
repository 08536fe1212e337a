#!/usr/bin/env node
/*
 * bench/engine_ort.js: the ONNX Runtime side of bench/engine. Runs one model
 * in onnxruntime-node (CPU) and prints one JSON line of timings; bench/engine
 * starts one node process per cell, as it starts one `tern run` per cell.
 *
 *   node bench/engine_ort.js MODEL.onnx --input NAME=FILE.npy [...]
 *        [--threads T] [--budget SECONDS] [--repeat N] [--min-runs N]
 *        [--output-dir DIR]
 *
 * The session is made as a tuned ORT deployment would: graphOptimizationLevel
 * 'all', intraOpNumThreads T, interOpNumThreads 1, sequential execution. The
 * first run is timed on its own (with session creation: the time to first
 * inference) and is the one warm-up run, as in `tern run --repeat`; then come
 * timed runs until BUDGET seconds are spent and at least --min-runs are done,
 * or --repeat runs are done. --repeat 0 stops after the first run (a cold-start
 * measurement). With --output-dir, the outputs of the last run are written
 * there as <index>.npy, in the session's output order, for bench/engine to
 * compare with tern's.
 *
 * Printed fields: runs, median_ms, p90_ms, min_ms (the timed runs; absent
 * with --repeat 0), load_ms (module load + session creation), create_ms,
 * first_run_ms, ttfi_ms (process start to the first result, from node's
 * performance clock whose origin is process start), max_rss_kb
 * (process.resourceUsage().maxRSS), ort_version, outputs (names).
 */
'use strict';

const tStart = performance.now();
const fs = require('fs');
const path = require('path');

function die(msg) {
    process.stderr.write(`engine_ort: error: ${msg}\n`);
    process.exit(1);
}

/* ---- .npy files (format versions 1-3, little-endian, C order) ------------ */

const NPY_TYPES = {
    '<f4': ['float32', Float32Array],
    '<f8': ['float64', Float64Array],
    '<i8': ['int64', BigInt64Array],
    '<i4': ['int32', Int32Array],
    '<i2': ['int16', Int16Array],
    '|i1': ['int8', Int8Array],
    '|u1': ['uint8', Uint8Array],
    '|b1': ['bool', Uint8Array],
};

function readNpy(file) {
    let buf;
    try {
        buf = fs.readFileSync(file);
    } catch (e) {
        die(`${file}: ${e.message}`);
    }
    if (buf.length < 10 || buf.toString('latin1', 0, 6) !== '\x93NUMPY')
        die(`${file}: not a .npy file`);
    const major = buf[6];
    const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
    const start = major === 1 ? 10 : 12;
    const header = buf.toString('latin1', start, start + hlen);
    const descr = /'descr':\s*'([^']+)'/.exec(header);
    const fortran = /'fortran_order':\s*(True|False)/.exec(header);
    const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
    if (!descr || !fortran || !shape) die(`${file}: unreadable header ${header.trim()}`);
    if (fortran[1] === 'True') die(`${file}: Fortran order is not supported`);
    const type = NPY_TYPES[descr[1]];
    if (!type) die(`${file}: dtype ${descr[1]} is not supported`);
    const dims = shape[1].split(',').map(s => s.trim()).filter(s => s).map(Number);
    const count = dims.reduce((a, b) => a * b, 1);
    const Ctor = type[1];
    const offset = start + hlen;
    if (buf.length - offset < count * Ctor.BYTES_PER_ELEMENT)
        die(`${file}: ${buf.length - offset} data bytes, shape [${dims}] needs more`);
    /* copy into a fresh, aligned buffer */
    const data = new Ctor(count);
    new Uint8Array(data.buffer).set(buf.subarray(offset, offset + count * Ctor.BYTES_PER_ELEMENT));
    return { type: type[0], data: type[0] === 'bool' ? data.map(v => v !== 0) : data, dims };
}

function writeNpy(file, tensor) {
    const descr = Object.keys(NPY_TYPES).find(k => NPY_TYPES[k][0] === tensor.type);
    if (!descr) die(`output of type ${tensor.type} cannot be written as .npy`);
    const dims = tensor.dims.map(Number);
    const shape = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
    let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
    header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
    const head = Buffer.alloc(10);
    head.write('\x93NUMPY', 0, 'latin1');
    head[6] = 1;
    head[7] = 0;
    head.writeUInt16LE(header.length, 8);
    let data = tensor.data;
    if (tensor.type === 'bool') data = Uint8Array.from(data, v => (v ? 1 : 0));
    const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), body]));
}

/* ---- arguments --------------------------------------------------------- */

function parseArgs(argv) {
    const a = { inputs: [], threads: 1, budget: 3, repeat: 100, minRuns: 5, outputDir: null };
    const num = (flag, v) => {
        const n = Number(v);
        if (v === undefined || !Number.isFinite(n) || n < 0) die(`${flag} wants a number >= 0, got '${v}'`);
        return n;
    };
    for (let i = 0; i < argv.length; i++) {
        const f = argv[i];
        if (f === '--input') {
            const spec = argv[++i] || '';
            const eq = spec.indexOf('=');
            if (eq <= 0) die(`--input wants NAME=FILE.npy, got '${spec}'`);
            a.inputs.push([spec.slice(0, eq), spec.slice(eq + 1)]);
        } else if (f === '--threads') a.threads = Math.max(1, Math.floor(num(f, argv[++i])));
        else if (f === '--budget') a.budget = num(f, argv[++i]);
        else if (f === '--repeat') a.repeat = Math.floor(num(f, argv[++i]));
        else if (f === '--min-runs') a.minRuns = Math.floor(num(f, argv[++i]));
        else if (f === '--output-dir') a.outputDir = argv[++i];
        else if (f.startsWith('-') || a.model) die(`unexpected argument '${f}'`);
        else a.model = f;
    }
    if (!a.model) die('usage: engine_ort.js MODEL.onnx --input NAME=FILE.npy [...] [--threads T] ' +
                      '[--budget S] [--repeat N] [--min-runs N] [--output-dir DIR]');
    return a;
}

function percentile(sorted, q) {
    return sorted[Math.min(sorted.length - 1, Math.round((sorted.length - 1) * q))];
}

async function main() {
    const args = parseArgs(process.argv.slice(2));
    let ort;
    try {
        ort = require('onnxruntime-node');
    } catch (e) {
        die(`cannot load onnxruntime-node (${e.message.split('\n')[0]}); ` +
            'install it with: npm install --prefix bench --no-save onnxruntime-node');
    }
    const feeds = {};
    for (const [name, file] of args.inputs) {
        const t = readNpy(file);
        feeds[name] = new ort.Tensor(t.type, t.data, t.dims);
    }

    const t0 = performance.now();
    let session;
    try {
        session = await ort.InferenceSession.create(args.model, {
            executionProviders: ['cpu'],
            graphOptimizationLevel: 'all',
            intraOpNumThreads: args.threads,
            interOpNumThreads: 1,
            executionMode: 'sequential',
        });
    } catch (e) {
        die(`${args.model}: ${e.message}`);
    }
    const t1 = performance.now();
    const run = async () => {
        try {
            return await session.run(feeds);
        } catch (e) {
            die(`${args.model}: run: ${e.message}`);
        }
    };
    let outs = await run();
    const t2 = performance.now();
    const result = {
        load_ms: t1 - tStart, create_ms: t1 - t0, first_run_ms: t2 - t1, ttfi_ms: t2,
        ort_version: ort.env.versions ? ort.env.versions.node : undefined,
        outputs: session.outputNames,
    };

    if (args.repeat > 0) {
        const times = [];
        const deadline = performance.now() + args.budget * 1000;
        while (times.length < args.repeat &&
               (times.length < args.minRuns || performance.now() < deadline)) {
            const a = performance.now();
            outs = await run();
            times.push(performance.now() - a);
        }
        const sorted = times.slice().sort((x, y) => x - y);
        const n = sorted.length;
        result.runs = n;
        result.median_ms = n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
        result.p90_ms = percentile(sorted, 0.9);
        result.min_ms = sorted[0];
    }
    if (args.outputDir) {
        fs.mkdirSync(args.outputDir, { recursive: true });
        session.outputNames.forEach((name, i) => writeNpy(path.join(args.outputDir, `${i}.npy`), outs[name]));
    }
    result.max_rss_kb = process.resourceUsage().maxRSS;
    process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch(e => die(e.stack || String(e)));
