// Golden values for tests/eval_generate_test.ts: llama2.c run.c's sampler (MIT, Andrej Karpathy,
// karpathy/llama2.c run.c at 350e04f), functions copied verbatim, run on fixed logits.
// Build and run: gcc -O0 -o /tmp/runc_sampler tools/eval_runc_sampler.c -lm && /tmp/runc_sampler
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct { float prob; int index; } ProbIndex;

void softmax(float* x, int size) {
    float max_val = x[0];
    for (int i = 1; i < size; i++) { if (x[i] > max_val) { max_val = x[i]; } }
    float sum = 0.0f;
    for (int i = 0; i < size; i++) { x[i] = expf(x[i] - max_val); sum += x[i]; }
    for (int i = 0; i < size; i++) { x[i] /= sum; }
}
int sample_mult(float* probabilities, int n, float coin) {
    float cdf = 0.0f;
    for (int i = 0; i < n; i++) { cdf += probabilities[i]; if (coin < cdf) { return i; } }
    return n - 1;
}
int compare(const void* a, const void* b) {
    ProbIndex* a_ = (ProbIndex*) a; ProbIndex* b_ = (ProbIndex*) b;
    if (a_->prob > b_->prob) return -1;
    if (a_->prob < b_->prob) return 1;
    return 0;
}
int sample_topp(float* probabilities, int n, float topp, ProbIndex* probindex, float coin) {
    int n0 = 0;
    const float cutoff = (1.0f - topp) / (n - 1);
    for (int i = 0; i < n; i++) {
        if (probabilities[i] >= cutoff) { probindex[n0].index = i; probindex[n0].prob = probabilities[i]; n0++; }
    }
    qsort(probindex, n0, sizeof(ProbIndex), compare);
    float cumulative_prob = 0.0f;
    int last_idx = n0 - 1;
    for (int i = 0; i < n0; i++) {
        cumulative_prob += probindex[i].prob;
        if (cumulative_prob > topp) { last_idx = i; break; }
    }
    float r = coin * cumulative_prob;
    float cdf = 0.0f;
    for (int i = 0; i <= last_idx; i++) { cdf += probindex[i].prob; if (r < cdf) { return probindex[i].index; } }
    return probindex[last_idx].index;
}
unsigned int random_u32(unsigned long long *state) {
    *state ^= *state >> 12; *state ^= *state << 25; *state ^= *state >> 27;
    return (*state * 0x2545F4914F6CDD1Dull) >> 32;
}
float random_f32(unsigned long long *state) { return (random_u32(state) >> 8) / 16777216.0f; }

int main(void) {
    unsigned long long s = 42;
    printf("{\"u32_seed42\": [");
    for (int i = 0; i < 5; i++) printf("%s%u", i ? ", " : "", random_u32(&s));
    printf("],\n");
    // 16 logits with distinct values; draws at two settings, 40 tokens each, seed 1234.
    const int n = 16;
    float base[16];
    for (int i = 0; i < n; i++) base[i] = sinf(1.7f * i) * 2.0f + 0.1f * i;
    printf(" \"logits\": [");
    for (int i = 0; i < n; i++) printf("%s%.9g", i ? ", " : "", base[i]);
    printf("],\n");
    const float temps[2] = {0.8f, 1.0f}, topps[2] = {0.9f, 1.0f};
    ProbIndex pi[16];
    for (int c = 0; c < 2; c++) {
        unsigned long long st = 1234;
        printf(" \"draws_t%g_p%g\": [", temps[c], topps[c]);
        for (int d = 0; d < 40; d++) {
            float p[16];
            for (int i = 0; i < n; i++) p[i] = base[i] / temps[c];
            softmax(p, n);
            float coin = random_f32(&st);
            int next = (topps[c] <= 0 || topps[c] >= 1) ? sample_mult(p, n, coin) : sample_topp(p, n, topps[c], pi, coin);
            printf("%s%d", d ? ", " : "", next);
        }
        printf("]%s\n", c == 0 ? "," : "");
    }
    printf("}\n");
    return 0;
}
