/* SPDX-License-Identifier: MIT */
/*
 * Measures AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305 sealing speed with
 * the installed wolfCrypt, on TLS-record-sized buffers, so that wsrelay can
 * offer the faster suites first. Usage: cipher_bench [seconds per cipher].
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>

#define RECORD_BYTES 16384

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned char plain[RECORD_BYTES];
static unsigned char sealed[RECORD_BYTES];

/* Seals records with AES-GCM for about seconds and returns the rate in MB/s. */
static double bench_aes_gcm(unsigned key_bytes, double seconds)
{
    unsigned char key[32] = {1}, iv[12] = {2}, tag[16], aad[13] = {3};
    double start = now_seconds(), elapsed;
    unsigned long long bytes = 0;
    Aes aes;

    if (wc_AesInit(&aes, NULL, INVALID_DEVID) != 0 || wc_AesGcmSetKey(&aes, key, key_bytes) != 0) {
        fprintf(stderr, "cipher_bench: AES-GCM key setup failed\n");
        exit(1);
    }
    do {
        for (int i = 0; i < 64; i++) {
            iv[11]++;
            if (wc_AesGcmEncrypt(&aes, sealed, plain, RECORD_BYTES, iv, sizeof(iv), tag,
                                 sizeof(tag), aad, sizeof(aad)) != 0) {
                fprintf(stderr, "cipher_bench: AES-GCM encryption failed\n");
                exit(1);
            }
            bytes += RECORD_BYTES;
        }
        elapsed = now_seconds() - start;
    } while (elapsed < seconds);
    wc_AesFree(&aes);
    return (double)bytes / elapsed / 1e6;
}

/* Seals records with ChaCha20-Poly1305 for about seconds and returns the rate in MB/s. */
static double bench_chacha(double seconds)
{
    unsigned char key[32] = {1}, iv[12] = {2}, tag[16], aad[13] = {3};
    double start = now_seconds(), elapsed;
    unsigned long long bytes = 0;

    do {
        for (int i = 0; i < 64; i++) {
            iv[11]++;
            if (wc_ChaCha20Poly1305_Encrypt(key, iv, aad, sizeof(aad), plain, RECORD_BYTES, sealed,
                                            tag) != 0) {
                fprintf(stderr, "cipher_bench: ChaCha20-Poly1305 encryption failed\n");
                exit(1);
            }
            bytes += RECORD_BYTES;
        }
        elapsed = now_seconds() - start;
    } while (elapsed < seconds);
    return (double)bytes / elapsed / 1e6;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;

    if (seconds <= 0 || seconds > 60) {
        fprintf(stderr, "usage: cipher_bench [seconds per cipher, 0 to 60]\n");
        return 1;
    }
    memset(plain, 0x5a, sizeof(plain));
    printf("record size %d bytes, %.1f s per cipher, one thread\n", RECORD_BYTES, seconds);
    printf("AES-128-GCM        %8.1f MB/s\n", bench_aes_gcm(16, seconds));
    printf("AES-256-GCM        %8.1f MB/s\n", bench_aes_gcm(32, seconds));
    printf("ChaCha20-Poly1305  %8.1f MB/s\n", bench_chacha(seconds));
    return 0;
}
