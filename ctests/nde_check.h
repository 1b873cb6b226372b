/*
 * Assertions of the C tests: a failed check prints where and why and exits
 * 1. Shared by nde_test.h and by the programs that must resolve every
 * library function themselves with dlsym (they cannot include nde_test.h).
 */
#ifndef NDE_CHECK_H
#define NDE_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

#define CHECK_EQ(a, b)                                                        \
    do {                                                                      \
        long long a_ = (long long)(a), b_ = (long long)(b);                   \
        if (a_ != b_) {                                                       \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", \
                    __FILE__, __LINE__, #a, a_, #b, b_);                      \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

#endif /* NDE_CHECK_H */
