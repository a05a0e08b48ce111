// Analysis throughput: tokens/s of the sensitivity accumulation (one forward and two backward
// passes per chunk: text labels and model-sampled labels) on the reference model, and the
// GFLOP/s it reaches against a measured OpenBLAS sgemm peak on the same machine and thread
// count.   bench_analyze [MODEL_DIR] [CHUNKS] [THREADS]
#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "analyze/calibration.h"
#include "analyze/fisher.h"
#include "core/atomic_file.h"
#include "core/parallel.h"
#include "model/model.h"
#include "model/tokenizer.h"

using namespace samq;

static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : std::string(SAMQ_SHARED_DIR) + "/models/refcode-32m";
  const int chunks = argc > 2 ? std::atoi(argv[2]) : 4;
  set_num_threads(argc > 3 ? std::atoi(argv[3]) : 0);
  // sgemm peak: the backward's dominant shape class, (512 x 1536) x (1536 x 512), all threads
  const int M = 512, N = 1536, K = 512;
  std::vector<float> a(size_t(M) * K, 0.5f), b(size_t(K) * N, 0.25f), c(size_t(M) * N);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1, a.data(), K, b.data(), N, 0, c.data(), N);
  double t0 = now();
  int reps = 0;
  while (now() - t0 < 1.0 || reps < 3) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1, a.data(), K, b.data(), N, 0, c.data(), N);
    ++reps;
  }
  const double peak = 2.0 * M * N * K * reps / (now() - t0) / 1e9;

  auto m = Model::load(dir);
  const Tokenizer tok = Tokenizer::from_hf_dir(dir, m->hparams.n_vocab);
  const std::string text = read_file(std::string(SAMQ_SHARED_DIR) + "/data/calib.txt").substr(0, 400000);
  const Calibration cal = calibration_from_text(text, "calib.txt", tok, 512, int64_t(chunks + 1) * 512);
  SensitivityAccumulator acc(*m, cpu_backward_ops());
  acc.add_chunk(cal.chunks[0], 0);  // warm-up
  t0 = now();
  for (int i = 1; i <= chunks; ++i) acc.add_chunk(cal.chunks[i], i);
  const double secs = now() - t0;
  // FLOPs per chunk: matmuls 2*P*n forward, 4*P*n per backward (dx and dW), two backwards;
  // attention 4*n^2*d_q per layer forward (scores + values), twice that per backward.
  const auto& h = m->hparams;
  const double n = 512;
  double p_mm = 0;
  for_each_tensor(m->weights, [&](const Tensor& t) {
    if (t.rows > 1 && &t != &m->weights.token_embd) p_mm += double(t.n_elements());
  });
  if (!m->weights.output.present()) p_mm += double(m->weights.token_embd.n_elements());
  const double att = 4.0 * n * n * double(h.n_embd_q()) * double(h.n_layer) / 2;  // causal half
  const double flops = (2 * p_mm * n + att) + 2 * (4 * p_mm * n + 2 * att);
  const double gflops = flops * chunks / secs / 1e9;
  std::printf("threads %d | sgemm peak (512x1536x512) %.1f GFLOP/s\n", num_threads(), peak);
  std::printf("analysis: %d chunks x 512 tokens in %.2f s = %.1f tokens/s, %.1f GFLOP/s = %.0f%% of sgemm peak\n", chunks,
              secs, chunks * n / secs, gflops, 100 * gflops / peak);
  return 0;
}
