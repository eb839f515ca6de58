/* Floating point as a user sees it: double and float (SSE2), long double
 * (x87), rounding modes, libm, and printf/strtod conversions. */
#include <fenv.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* volatile: keep the compiler from folding at build time */
static volatile double vd[] = {0.1, 1.0 / 3.0, -2.5, 1e300, 5e-324, 123456.789, 0.0, -0.0};
static volatile float vf[] = {0.1f, 3.14159265f, -1e30f, 1e-40f, 7.0f};
static volatile long double vl[] = {0.1L, 3.0L, -1e4000L, 1e-4000L, 2.0L};

int main(int argc, char **argv)
{
    double acc = 0;
    for (int i = 1; i <= 1000; i++)
        acc += 1.0 / ((double)i * i);
    printf("basel %.17g %a\n", acc, acc);
    for (unsigned i = 0; i < sizeof(vd) / sizeof(vd[0]); i++) {
        double x = vd[i];
        printf("d %.17g %a %g %e %f sqrt=%.17g trunc=%lld\n", x, x, x, x * 3, x / 7, sqrt(fabs(x)),
               (long long)(x / 1e290));
    }
    for (unsigned i = 0; i < sizeof(vf) / sizeof(vf[0]); i++) {
        float x = vf[i];
        printf("f %.9g %a %.9g %d\n", x, x, x * x + 1.5f, (int)(x * 100.0f) / 7);
    }
    for (unsigned i = 0; i < sizeof(vl) / sizeof(vl[0]); i++) {
        long double x = vl[i];
        printf("ld %.21Lg %La %.21Lg %.21Lg\n", x, x, x / 3.0L, sqrtl(fabsl(x)) * 2.0L);
    }
    long double h = 0;
    for (int i = 1; i < 200; i++)
        h += 1.0L / i;
    printf("harmonic %.21Lg\n", h);

    static const int modes[] = {FE_TONEAREST, FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO};
    static const char *names[] = {"nearest", "upward", "downward", "towardzero"};
    for (int m = 0; m < 4; m++) {
        fesetround(modes[m]);
        volatile double a = vd[1], b = vd[5];
        volatile float fa = vf[1];
        volatile long double la = vl[0];
        printf("%s: %a %a %a %a %.0f %.0f %La\n", names[m], a * b, a / b, (double)(fa / 3.0f),
               sqrt(b), rint(2.5), nearbyint(-3.5), la / 3.0L);
    }
    fesetround(FE_TONEAREST);
    /* libm: print fewer digits than a ulp, so a libm picked for another CPU
     * (FMA or not) prints the same. */
    for (int i = -3; i <= 6; i++) {
        double x = i * 0.7;
        printf("m %d %.13g %.13g %.13g %.13g %.13g %.13g\n", i, sin(x), cos(x), exp(x),
               log(fabs(x) + 1), pow(fabs(x) + 0.5, 1.7), atan2(x, 0.3));
    }
    printf("floor %g ceil %g round %g fmod %g hypot %g\n", floor(-2.5), ceil(-2.5), round(-2.5),
           fmod(10.5, 3.0), hypot(3.0, 4.0));
    printf("limits %a %a %La %d %d\n", DBL_MAX, DBL_MIN, LDBL_MAX, isnan(NAN), isinf(-INFINITY));
    double total = 0;
    for (int i = 1; i < argc; i++)
        total += strtod(argv[i], NULL);
    printf("args %.17g\n", total);
    char buf[64];
    snprintf(buf, sizeof buf, "%.3f", 2.0005);
    printf("conv %s %ld %.17g\n", buf, lrint(1e9 + 0.5), atof("6.02214076e23"));
    return 0;
}
