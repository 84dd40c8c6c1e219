// Batched single-precision GEMM for TensorFlow.js kernels, through OpenBLAS's cblas_sgemm.
// Written by hand because no maintained npm package exposes a BLAS to Node without downloading a
// prebuilt binary at install time; the wasm backend's own matmul runs at about a quarter of OpenBLAS's
// speed on one core. Operands are Float32Array views (of the wasm heap or of cpu-backend arrays).
#include <node_api.h>
#include <cblas.h>
#include <cstdint>
#include <cstdio>

extern "C" void openblas_set_num_threads(int);
extern "C" int openblas_get_num_threads(void);

#define CHECK(call)                                             \
  if ((call) != napi_ok) {                                      \
    napi_throw_error(env, nullptr, "blas: N-API call failed");  \
    return nullptr;                                             \
  }

static bool f32(napi_env env, napi_value v, float** data, size_t* len) {
  bool is_ta = false;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return false;
  napi_typedarray_type type;
  void* ptr = nullptr;
  napi_value ab;
  size_t offset = 0;
  if (napi_get_typedarray_info(env, v, &type, len, &ptr, &ab, &offset) != napi_ok) return false;
  if (type != napi_float32_array) return false;
  *data = static_cast<float*>(ptr);
  return true;
}

static int64_t i64(napi_env env, napi_value v) {
  int64_t x = 0;
  napi_get_value_int64(env, v, &x);
  return x;
}

// gemm(a, b, c, batch, m, n, k, transA, transB, strideA, strideB[, bias])
// For i < batch: C[i] (m x n) = op(A[i]) · op(B[i]) (+ bias[n] on every row). A stride of 0 broadcasts
// that operand. Every extent is checked against the arrays' lengths before any access.
static napi_value Gemm(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value argv[12];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc < 11) {
    napi_throw_type_error(env, nullptr, "blas.gemm: expected 11 or 12 arguments");
    return nullptr;
  }
  float *a, *b, *c, *bias = nullptr;
  size_t la, lb, lc, lbias = 0;
  if (!f32(env, argv[0], &a, &la) || !f32(env, argv[1], &b, &lb) || !f32(env, argv[2], &c, &lc)) {
    napi_throw_type_error(env, nullptr, "blas.gemm: a, b and c must be Float32Arrays");
    return nullptr;
  }
  if (argc == 12) {
    napi_valuetype t;
    napi_typeof(env, argv[11], &t);
    if (t != napi_undefined && t != napi_null && !f32(env, argv[11], &bias, &lbias)) {
      napi_throw_type_error(env, nullptr, "blas.gemm: bias must be a Float32Array");
      return nullptr;
    }
  }
  const int64_t batch = i64(env, argv[3]), m = i64(env, argv[4]), n = i64(env, argv[5]), k = i64(env, argv[6]);
  bool ta = false, tb = false;
  napi_get_value_bool(env, argv[7], &ta);
  napi_get_value_bool(env, argv[8], &tb);
  const int64_t sa = i64(env, argv[9]), sb = i64(env, argv[10]);
  if (batch < 1 || m < 1 || n < 1 || k < 1 || sa < 0 || sb < 0 ||
      (batch - 1) * sa + m * k > (int64_t)la || (batch - 1) * sb + k * n > (int64_t)lb ||
      batch * m * n > (int64_t)lc || (bias && (int64_t)lbias < n)) {
    napi_throw_range_error(env, nullptr, "blas.gemm: dimensions exceed the arrays");
    return nullptr;
  }
  const int lda = ta ? m : k, ldb = tb ? k : n;
  for (int64_t i = 0; i < batch; i++) {
    float* ci = c + i * m * n;
    float beta = 0.0f;
    if (bias) {
      for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++) ci[r * n + j] = bias[j];
      beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
                1.0f, a + i * sa, lda, b + i * sb, ldb, beta, ci, (int)n);
  }
  return nullptr;
}

static napi_value SetThreads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc == 1) openblas_set_num_threads((int)i64(env, argv[0]));
  napi_value out;
  CHECK(napi_create_int32(env, openblas_get_num_threads(), &out));
  return out;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"gemm", nullptr, Gemm, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"threads", nullptr, SetThreads, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, 2, props);
  openblas_set_num_threads(1);  // one thread unless asked: the same budget as the wasm backend
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
