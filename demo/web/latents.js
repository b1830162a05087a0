// The project's latent rule in the browser: z = numpy.random.RandomState(seed).randn(z_dim) as
// float32, times psi. Reimplemented from numpy's legacy generator: MT19937 seeded with one 32-bit
// integer, doubles from two 32-bit draws (27 + 26 bits), and the polar Box-Muller method that keeps
// its second value for the next call. Seed 42 is then the same face here as in Python.

const N = 624;
const M = 397;

class MT19937 {
  constructor(seed) {
    this.mt = new Uint32Array(N);
    this.mt[0] = seed >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = this.mt[i - 1] ^ (this.mt[i - 1] >>> 30);
      this.mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
    this.index = N;
    this.spare = null;  // the polar method's second value
  }

  twist() {
    const mt = this.mt;
    for (let i = 0; i < N; i++) {
      const y = (mt[i] & 0x80000000) | (mt[(i + 1) % N] & 0x7fffffff);
      mt[i] = (mt[(i + M) % N] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0)) >>> 0;
    }
    this.index = 0;
  }

  uint32() {
    if (this.index >= N) this.twist();
    let y = this.mt[this.index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  double() {  // [0, 1) with 53 random bits, as numpy's random_double
    const a = this.uint32() >>> 5;
    const b = this.uint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  gauss() {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    let x1, x2, r2;
    do {
      x1 = 2 * this.double() - 1;
      x2 = 2 * this.double() - 1;
      r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1 || r2 === 0);
    const f = Math.sqrt(-2 * Math.log(r2) / r2);
    this.spare = f * x1;
    return f * x2;
  }
}

export const MAX_SEED = 4294967295;

// A seed from user text: a whole number in 0..2^32-1, or an Error whose message says why not.
export function checkSeed(value, name = "seed") {
  const text = String(value).trim();
  if (text === "") throw new Error(`${name} is empty; enter a whole number from 0 to ${MAX_SEED}`);
  if (!/^\+?\d{1,30}$/.test(text)) {
    throw new Error(`${name} must be a whole number from 0 to ${MAX_SEED}, got ${JSON.stringify(text.slice(0, 40))}`);
  }
  const seed = Number(text);
  if (seed > MAX_SEED) throw new Error(`${name} must be from 0 to ${MAX_SEED}, got ${text.slice(0, 40)}`);
  return seed;
}

// numpy.random.RandomState(seed).randn(n) as float64 (the values before the float32 cast).
export function randn(seed, n) {
  const rng = new MT19937(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.gauss();
  return out;
}

// The class a conditional model draws for a seed when none is asked for, as core/seeds.py's
// seed_classes: after the seed's latent, RandomState(seed) draws one uniform number, which picks a
// class with the training data's class frequencies (weights).
export function seedClass(seed, zDim, weights) {
  const rng = new MT19937(seed);
  for (let i = 0; i < zDim; i++) rng.gauss();
  const u = rng.double();
  const total = weights.reduce((a, b) => a + b, 0);
  let edge = 0;
  for (let k = 0; k < weights.length; k++) {
    edge += weights[k] / total;
    if (u < edge) return k;
  }
  return weights.length - 1;
}

// [seeds.length * zDim] float32: the project's latent rule, times psi.
export function latents(seeds, zDim, psi = 1) {
  const z = new Float32Array(seeds.length * zDim);
  seeds.forEach((seed, k) => {
    const row = randn(seed, zDim);
    for (let i = 0; i < zDim; i++) z[k * zDim + i] = Math.fround(row[i]) * (psi === 1 ? 1 : Math.fround(psi));
  });
  return z;
}

// Spherical interpolation between two latents, as core/seeds.py's slerp.
export function slerp(a, b, t) {
  let na = 0, nb = 0, dot = 0;
  for (let i = 0; i < a.length; i++) { na += a[i] * a[i]; nb += b[i] * b[i]; }
  na = Math.sqrt(na); nb = Math.sqrt(nb);
  for (let i = 0; i < a.length; i++) dot += (a[i] / na) * (b[i] / nb);
  const omega = Math.acos(Math.min(1, Math.max(-1, dot)));
  const out = new Float32Array(a.length);
  if (omega < 1e-6) {
    for (let i = 0; i < a.length; i++) out[i] = (1 - t) * a[i] + t * b[i];
    return out;
  }
  const s = Math.sin(omega);
  const wa = Math.sin((1 - t) * omega) / s, wb = Math.sin(t * omega) / s;
  for (let i = 0; i < a.length; i++) out[i] = wa * a[i] + wb * b[i];
  return out;
}
