/* edgeode_quant.c: int8 <-> float at the models' boundaries, rounding as numpy does (half to even, rintf in
 * the default rounding mode), so that the firmware feeds TFLM the bytes the host loop feeds it. */
#include "edgeode_quant.h"

#include <math.h>

void edgeode_quantize(const float *x, int8_t *q, int n, float scale, int zero_point)
{
    int i;
    for (i = 0; i < n; ++i) {
        float v = rintf(x[i] / scale) + (float)zero_point;
        if (!(v >= -128.0f)) v = -128.0f; /* also NaN */
        if (v > 127.0f) v = 127.0f;
        q[i] = (int8_t)v;
    }
}

void edgeode_dequantize(const int8_t *q, float *x, int n, float scale, int zero_point)
{
    int i;
    for (i = 0; i < n; ++i) x[i] = scale * ((float)q[i] - (float)zero_point);
}
