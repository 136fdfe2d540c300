/* Fused monotonic rational-quadratic spline (Durkan et al. 2019, arXiv:1906.04032) with zuko's
 * parametrisation (zuko.transforms.MonotonicRQSTransform): forward (y, log|dy/dx|), its
 * closed-form backward, and the inverse; float and double.
 *
 * Layout: x (n), params (n, 3K - 1) = K width logits, K height logits, K - 1 interior knot
 * derivative logits, per element, as zuko's (B, D, 3K - 1) tensor. Elements are processed in
 * chunks of CHUNK: each chunk's knot arrays are transposed into [K][CHUNK] stack buffers, so
 * every loop below runs over CHUNK independent elements and vectorises (exp and log through
 * glibc's vector maths, libmvec). Why this exists: see qcalo/models/blocks/spline.py.
 *
 * Built at first use by qcalo/models/blocks/native.py (cc -O3 -march=native -ffast-math); the tests
 * hold it equal to zuko's transform in value and gradient (float64).
 */
#include <math.h>
#include <stddef.h>

#define MAXK 64 /* the largest spline_bins a FlowConfig allows */
#define CHUNK 64
/* Every loop over the elements of a chunk is independent per element. */
#define SIMD _Pragma("omp simd")
/* Chunks are independent: with OpenMP they are shared out statically over the threads of the
 * process's OpenMP runtime (torch's own, when torch is loaded first: one pool, no
 * oversubscription), so the result does not depend on the number of threads. */
#define PARALLEL_CHUNKS _Pragma("omp parallel for schedule(static) if (blocks >= 64)")

#define DEFINE_SPLINE(T, S, EXP, LOG, ABS, SQRT)                                                  \
    /* A chunk's parameters, element-major in memory, transposed to [3K - 1][CHUNK] so that the   \
     * loops below read contiguous rows. */                                                       \
    static void load_##S(const T *restrict p, int c, int K, T PT[3 * MAXK][CHUNK]) {              \
        const int P = 3 * K - 1;                                                                  \
        for (int i = 0; i < c; i++)                                                               \
            for (int j = 0; j < P; j++) PT[j][i] = p[i * P + j];                                  \
    }                                                                                             \
                                                                                                  \
    /* Knots of a chunk: normalised widths W and heights H [K][CHUNK], derivatives D [K+1]. */    \
    static void knots_##S(T PT[3 * MAXK][CHUNK], int c, int K, T ls, T W[MAXK][CHUNK],            \
                          T H[MAXK][CHUNK], T D[MAXK + 1][CHUNK]) {                               \
        const T lw = ls / 2;                                                                      \
        T mw[CHUNK], mh[CHUNK], sw[CHUNK], sh[CHUNK];                                             \
        for (int j = 0; j < K; j++)                                                               \
            SIMD for (int i = 0; i < c; i++) {                                                    \
                T u = PT[j][i], v = PT[K + j][i];                                                 \
                W[j][i] = u / (1 + ABS(u) / lw);                                                  \
                H[j][i] = v / (1 + ABS(v) / lw);                                                  \
            }                                                                                     \
        SIMD for (int i = 0; i < c; i++) {                                                        \
            mw[i] = W[0][i];                                                                      \
            mh[i] = H[0][i];                                                                      \
            sw[i] = 0;                                                                            \
            sh[i] = 0;                                                                            \
        }                                                                                         \
        for (int j = 1; j < K; j++)                                                               \
            SIMD for (int i = 0; i < c; i++) {                                                    \
                mw[i] = W[j][i] > mw[i] ? W[j][i] : mw[i];                                        \
                mh[i] = H[j][i] > mh[i] ? H[j][i] : mh[i];                                        \
            }                                                                                     \
        for (int j = 0; j < K; j++)                                                               \
            SIMD for (int i = 0; i < c; i++) {                                                    \
                W[j][i] = EXP(W[j][i] - mw[i]);                                                   \
                H[j][i] = EXP(H[j][i] - mh[i]);                                                   \
                sw[i] += W[j][i];                                                                 \
                sh[i] += H[j][i];                                                                 \
            }                                                                                     \
        SIMD for (int i = 0; i < c; i++) {                                                        \
            sw[i] = 1 / sw[i];                                                                    \
            sh[i] = 1 / sh[i];                                                                    \
        }                                                                                         \
        for (int j = 0; j < K; j++)                                                               \
            SIMD for (int i = 0; i < c; i++) {                                                    \
                W[j][i] *= sw[i];                                                                 \
                H[j][i] *= sh[i];                                                                 \
            }                                                                                     \
        SIMD for (int i = 0; i < c; i++) {                                                        \
            D[0][i] = 1;                                                                          \
            D[K][i] = 1;                                                                          \
        }                                                                                         \
        for (int j = 1; j < K; j++)                                                               \
            SIMD for (int i = 0; i < c; i++) {                                                    \
                T u = PT[2 * K + j - 1][i];                                                       \
                D[j][i] = EXP(u / (1 + ABS(u) / ls));                                             \
            }                                                                                     \
    }                                                                                             \
                                                                                                  \
    /* Bin of each value among the x knots (use_heights = 0) or the y knots (1): the number of    \
     * knots strictly below it, minus one, as zuko's searchsorted; knots increase, so widths are  \
     * accumulated while the bin's right edge is below the value. Outputs per element: bin k,     \
     * cumulative C_k of widths and of heights below it, its width and height probabilities and   \
     * its two knot derivatives. */                                                               \
    static void bins_##S(const T *restrict v, int c, int K, T bound, int use_heights,             \
                         T W[MAXK][CHUNK], T H[MAXK][CHUNK], T D[MAXK + 1][CHUNK],                \
                         int *restrict k, T *restrict cw, T *restrict ch, T *restrict wk,         \
                         T *restrict hk, T *restrict d0, T *restrict d1) {                        \
        int open[CHUNK];                                                                          \
        SIMD for (int i = 0; i < c; i++) {                                                        \
            k[i] = 0;                                                                             \
            cw[i] = 0;                                                                            \
            ch[i] = 0;                                                                            \
            wk[i] = W[0][i];                                                                      \
            hk[i] = H[0][i];                                                                      \
            d0[i] = 1;                                                                            \
            d1[i] = D[1][i];                                                                      \
            open[i] = 1;                                                                          \
        }                                                                                         \
        for (int j = 0; j < K - 1; j++)                                                           \
            SIMD for (int i = 0; i < c; i++) {                                                    \
                T edge = use_heights ? bound * (2 * (ch[i] + H[j][i]) - 1)                        \
                                     : bound * (2 * (cw[i] + W[j][i]) - 1);                       \
                int below = open[i] && edge < v[i];                                               \
                cw[i] = below ? cw[i] + W[j][i] : cw[i];                                          \
                ch[i] = below ? ch[i] + H[j][i] : ch[i];                                          \
                wk[i] = below ? W[j + 1][i] : wk[i];                                              \
                hk[i] = below ? H[j + 1][i] : hk[i];                                              \
                d0[i] = below ? D[j + 1][i] : d0[i];                                              \
                d1[i] = below ? D[j + 2][i] : d1[i];                                              \
                k[i] = below ? j + 1 : k[i];                                                      \
                open[i] = below;                                                                  \
            }                                                                                     \
    }                                                                                             \
                                                                                                  \
    /* A chunk's working arrays: transposed parameters, knots, and each element's bin. */         \
    typedef struct {                                                                              \
        T PT[3 * MAXK][CHUNK], W[MAXK][CHUNK], H[MAXK][CHUNK], D[MAXK + 1][CHUNK];                \
        T cw[CHUNK], ch[CHUNK], wk[CHUNK], hk[CHUNK], d0[CHUNK], d1[CHUNK];                       \
        int k[CHUNK];                                                                             \
    } chunk_##S;                                                                                  \
                                                                                                  \
    /* Fill chunk ``b`` at element ``start``: knots, and the bins of ``values`` among the x       \
     * knots (use_heights = 0) or the y knots (1). Returns the chunk's element count. */          \
    static int prepare_##S(chunk_##S *b, ptrdiff_t n, ptrdiff_t start, int K, T bound, T ls,      \
                           const T *restrict params, const T *restrict values,                    \
                           int use_heights) {                                                     \
        int c = n - start < CHUNK ? (int)(n - start) : CHUNK;                                     \
        load_##S(params + start * (3 * K - 1), c, K, b->PT);                                      \
        knots_##S(b->PT, c, K, ls, b->W, b->H, b->D);                                             \
        bins_##S(values + start, c, K, bound, use_heights, b->W, b->H, b->D, b->k, b->cw,         \
                 b->ch, b->wk, b->hk, b->d0, b->d1);                                              \
        return c;                                                                                 \
    }                                                                                             \
                                                                                                  \
    void qcalo_rqs_forward_##S(ptrdiff_t n, int K, T bound, T ls, const T *restrict x,            \
                               const T *restrict params, T *restrict y, T *restrict ladj) {       \
        const ptrdiff_t blocks = (n + CHUNK - 1) / CHUNK;                                         \
        PARALLEL_CHUNKS                                                                           \
        for (ptrdiff_t block = 0; block < blocks; block++) {                                      \
            const ptrdiff_t start = block * CHUNK;                                                \
            const T *xs = x + start;                                                              \
            chunk_##S b;                                                                          \
            const int c = prepare_##S(&b, n, start, K, bound, ls, params, x, 0);                  \
            SIMD for (int i = 0; i < c; i++) {                                                    \
                T xi = xs[i];                                                                     \
                T x0 = bound * (2 * b.cw[i] - 1), y0 = bound * (2 * b.ch[i] - 1);                 \
                T w = 2 * bound * b.wk[i], h = 2 * bound * b.hk[i], s = h / w;                    \
                T z = (xi - x0) / w;                                                              \
                z = z < 0 ? 0 : (z > 1 ? 1 : z);                                                  \
                T zz = z * (1 - z), den = s + (b.d0[i] + b.d1[i] - 2 * s) * zz;                   \
                T num = s * z * z + b.d0[i] * zz;                                                 \
                T m = 2 * s * zz + b.d0[i] * (1 - z) * (1 - z) + b.d1[i] * z * z;                 \
                int inside = xi > -bound && xi <= bound;                                          \
                y[start + i] = inside ? y0 + h * num / den : xi;                                  \
                T logdet = LOG(s * s * m) - 2 * LOG(den); /* unconditional: vectorises */         \
                ladj[start + i] = inside ? logdet : 0;                                            \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    /* Gradients of L(y, ladj) given gy = dL/dy and gl = dL/dladj: gx (n), gp (n, 3K - 1).        \
     * y = y0 + h R(z, s, d0, d1), R = N/den, z = (x - x0)/w, s = h/w; ladj = 2 ln s + ln M -     \
     * 2 ln den. Knots: x0 = B(2 C_k - 1), C_k = sum_{j<k} W_j, w = 2B W_k, so dL/dW_j =          \
     * 2B(g_x0 [j<k] + g_w [j=k]) and sum_j W_j dL/dW_j = g_x0 (x0 + B) + g_w w (softmax). */     \
    void qcalo_rqs_backward_##S(ptrdiff_t n, int K, T bound, T ls, const T *restrict x,           \
                                const T *restrict params, const T *restrict gy_in,                \
                                const T *restrict gl_in, T *restrict gx, T *restrict gp) {        \
        const int P = 3 * K - 1;                                                                  \
        const T lw = ls / 2;                                                                      \
        const ptrdiff_t blocks = (n + CHUNK - 1) / CHUNK;                                         \
        PARALLEL_CHUNKS                                                                           \
        for (ptrdiff_t block = 0; block < blocks; block++) {                                      \
            const ptrdiff_t start = block * CHUNK;                                                \
            T gx0[CHUNK], gw[CHUNK], gy0[CHUNK], gh[CHUNK], gd0[CHUNK], gd1[CHUNK];               \
            T dotw[CHUNK], doth[CHUNK], G[3 * MAXK][CHUNK];                                       \
            const T *xs = x + start;                                                              \
            T *g = gp + start * P;                                                                \
            chunk_##S b;                                                                          \
            const int c = prepare_##S(&b, n, start, K, bound, ls, params, x, 0);                  \
            SIMD for (int i = 0; i < c; i++) {                                                    \
                T xi = xs[i];                                                                     \
                int inside = xi > -bound && xi <= bound;                                          \
                T gy = inside ? gy_in[start + i] : 0, gl = inside ? gl_in[start + i] : 0;         \
                T x0 = bound * (2 * b.cw[i] - 1), y0 = bound * (2 * b.ch[i] - 1);                 \
                T w = 2 * bound * b.wk[i], h = 2 * bound * b.hk[i], s = h / w;                    \
                T z = (xi - x0) / w;                                                              \
                z = z < 0 ? 0 : (z > 1 ? 1 : z);                                                  \
                T zz = z * (1 - z), omz = 1 - 2 * z, a = b.d0[i] + b.d1[i] - 2 * s;               \
                T den = s + a * zz, inv_den = 1 / den;                                            \
                T num = s * z * z + b.d0[i] * zz, ratio = num * inv_den;                          \
                T m = 2 * s * zz + b.d0[i] * (1 - z) * (1 - z) + b.d1[i] * z * z, inv_m = 1 / m;  \
                T dr_dz = (2 * s * z + b.d0[i] * omz - ratio * a * omz) * inv_den;                \
                T dr_ds = (z * z - ratio * (1 - 2 * zz)) * inv_den;                               \
                T dl_dz = 2 * (s * omz - b.d0[i] * (1 - z) + b.d1[i] * z) * inv_m -               \
                          2 * a * omz * inv_den;                                                  \
                T dl_ds = 2 / s + 2 * zz * inv_m - 2 * (1 - 2 * zz) * inv_den;                    \
                T gyh = gy * h;                                                                   \
                T g_z = gyh * dr_dz + gl * dl_dz, g_s = gyh * dr_ds + gl * dl_ds;                 \
                T inv_w = 1 / w;                                                                  \
                gh[i] = gy * ratio + g_s * inv_w;                                                 \
                gw[i] = -(g_z * z + g_s * s) * inv_w;                                             \
                gx0[i] = -g_z * inv_w;                                                            \
                gy0[i] = gy;                                                                      \
                gd0[i] = gyh * zz * (1 - ratio) * inv_den +                                       \
                         gl * ((1 - z) * (1 - z) * inv_m - 2 * zz * inv_den);                     \
                gd1[i] = -gyh * zz * ratio * inv_den + gl * (z * z * inv_m - 2 * zz * inv_den);   \
                gx[start + i] = inside ? g_z * inv_w : gy_in[start + i];                          \
                dotw[i] = gx0[i] * (x0 + bound) + gw[i] * w;                                      \
                doth[i] = gy0[i] * (y0 + bound) + gh[i] * h;                                      \
            }                                                                                     \
            for (int j = 0; j < K; j++)                                                           \
                SIMD for (int i = 0; i < c; i++) {                                                \
                    T sel_w = j < b.k[i] ? gx0[i] : (j == b.k[i] ? gw[i] : 0);                    \
                    T sel_h = j < b.k[i] ? gy0[i] : (j == b.k[i] ? gh[i] : 0);                    \
                    T u = b.PT[j][i], v = b.PT[K + j][i];                                         \
                    T cu = 1 / (1 + ABS(u) / lw), cv = 1 / (1 + ABS(v) / lw);                     \
                    G[j][i] = b.W[j][i] * (2 * bound * sel_w - dotw[i]) * cu * cu;                \
                    G[K + j][i] = b.H[j][i] * (2 * bound * sel_h - doth[i]) * cv * cv;            \
                }                                                                                 \
            for (int j = 1; j < K; j++)                                                           \
                SIMD for (int i = 0; i < c; i++) {                                                \
                    T sel = j == b.k[i] ? gd0[i] : (j == b.k[i] + 1 ? gd1[i] : 0);                \
                    T u = b.PT[2 * K + j - 1][i];                                                 \
                    T cu = 1 / (1 + ABS(u) / ls);                                                 \
                    G[2 * K + j - 1][i] = sel * b.D[j][i] * cu * cu;                              \
                }                                                                                 \
            for (int i = 0; i < c; i++)                                                           \
                for (int j = 0; j < P; j++) g[i * P + j] = G[j][i];                               \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    /* x = tau^-1(y): the bin's quadratic solved in the stable form (NSF appendix A.3). */        \
    void qcalo_rqs_inverse_##S(ptrdiff_t n, int K, T bound, T ls, const T *restrict y,            \
                               const T *restrict params, T *restrict x) {                         \
        const ptrdiff_t blocks = (n + CHUNK - 1) / CHUNK;                                         \
        PARALLEL_CHUNKS                                                                           \
        for (ptrdiff_t block = 0; block < blocks; block++) {                                      \
            const ptrdiff_t start = block * CHUNK;                                                \
            const T *ys = y + start;                                                              \
            chunk_##S b;                                                                          \
            const int c = prepare_##S(&b, n, start, K, bound, ls, params, y, 1);                  \
            SIMD for (int i = 0; i < c; i++) {                                                    \
                T yi = ys[i];                                                                     \
                T x0 = bound * (2 * b.cw[i] - 1), y0 = bound * (2 * b.ch[i] - 1);                 \
                T w = 2 * bound * b.wk[i], h = 2 * bound * b.hk[i], s = h / w;                    \
                T off = yi - y0, a = b.d0[i] + b.d1[i] - 2 * s;                                   \
                T qa = h * (s - b.d0[i]) + off * a, qb = h * b.d0[i] - off * a, qc = -s * off;    \
                T disc = qb * qb - 4 * qa * qc;                                                   \
                disc = disc > 0 ? disc : 0;                                                       \
                T z = 2 * qc / (-qb - SQRT(disc));                                                \
                z = z < 0 ? 0 : (z > 1 ? 1 : z);                                                  \
                int inside = yi > -bound && yi <= bound;                                          \
                x[start + i] = inside ? x0 + z * w : yi;                                          \
            }                                                                                     \
        }                                                                                         \
    }

DEFINE_SPLINE(float, f32, expf, logf, fabsf, sqrtf)
DEFINE_SPLINE(double, f64, exp, log, fabs, sqrt)
