/* ekya_keyshim: hands tritonserver its admin key without putting the key on its command line.
 *
 * tritonserver takes the restricted-API key only as a flag value (--grpc-restricted-protocol=...:
 * admin-key=KEY), and /proc/PID/cmdline is readable by every local user. The controller starts it with
 * a placeholder instead of the key, this object in LD_PRELOAD, and the read end of a pipe holding the key
 * in EKYA_ADMIN_KEY_FD. glibc runs this constructor with (argc, argv, envp) before main(): every argv
 * entry holding the placeholder is replaced by a heap copy with the key substituted. main() parses the
 * key; /proc/PID/cmdline still shows the original stack strings, the placeholder.
 *
 * The variables are then removed from the environment, so the python backend stubs tritonserver starts
 * do not inherit them. Where the placeholder is present but no key can be read, the process exits:
 * a server must never run with the (public) placeholder as its key.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EKYA_PLACEHOLDER "@EKYA_ADMIN_KEY@"
#define EKYA_FD_VAR "EKYA_ADMIN_KEY_FD"
#define EKYA_MAX_KEY 4096

static void ekya_fail(const char *why) {
    fprintf(stderr, "ekya_keyshim: %s; refusing to start with the placeholder as the admin key\n", why);
    _exit(78);
}

static char *ekya_read_key(int fd) {
    char *key = calloc(EKYA_MAX_KEY + 1, 1);
    size_t used = 0;
    if (key == NULL) return NULL;
    while (used < EKYA_MAX_KEY) {
        ssize_t got = read(fd, key + used, EKYA_MAX_KEY - used);
        if (got < 0) { free(key); return NULL; }
        if (got == 0) break;
        used += (size_t)got;
    }
    while (used > 0 && (key[used - 1] == '\n' || key[used - 1] == '\r' || key[used - 1] == ' ')) key[--used] = 0;
    return key;
}

static char *ekya_substitute(const char *arg, const char *key) {
    size_t plen = strlen(EKYA_PLACEHOLDER), klen = strlen(key), count = 0;
    for (const char *p = strstr(arg, EKYA_PLACEHOLDER); p != NULL; p = strstr(p + plen, EKYA_PLACEHOLDER)) count++;
    char *out = malloc(strlen(arg) + count * klen + 1);
    if (out == NULL) return NULL;
    char *w = out;
    const char *r = arg;
    for (const char *p = strstr(r, EKYA_PLACEHOLDER); p != NULL; p = strstr(r, EKYA_PLACEHOLDER)) {
        memcpy(w, r, (size_t)(p - r)); w += p - r;
        memcpy(w, key, klen); w += klen;
        r = p + plen;
    }
    strcpy(w, r);
    return out;
}

__attribute__((constructor)) static void ekya_keyshim(int argc, char **argv, char **envp) {
    (void)envp;
    const char *fd_text = getenv(EKYA_FD_VAR);
    int fd = -1;
    if (fd_text != NULL) {
        char *end = NULL;
        long value = strtol(fd_text, &end, 10);
        if (end != fd_text && *end == 0 && value >= 0 && value < 65536) fd = (int)value;
    }
    /* Children (the backend stubs) inherit neither the shim nor the descriptor's name. */
    unsetenv(EKYA_FD_VAR);
    unsetenv("LD_PRELOAD");
    int wanted = 0;
    for (int i = 1; i < argc && argv != NULL; i++)
        if (argv[i] != NULL && strstr(argv[i], EKYA_PLACEHOLDER) != NULL) wanted = 1;
    if (!wanted) {
        if (fd >= 0) close(fd);
        return;
    }
    if (fd < 0) ekya_fail(EKYA_FD_VAR " is not set to a readable descriptor");
    char *key = ekya_read_key(fd);
    close(fd);
    if (key == NULL || key[0] == 0) ekya_fail("no admin key could be read from " EKYA_FD_VAR);
    if (strstr(key, EKYA_PLACEHOLDER) != NULL) ekya_fail("the admin key contains the placeholder");
    for (int i = 1; i < argc; i++) {
        if (argv[i] == NULL || strstr(argv[i], EKYA_PLACEHOLDER) == NULL) continue;
        char *replaced = ekya_substitute(argv[i], key);
        if (replaced == NULL) ekya_fail("out of memory");
        argv[i] = replaced; /* a heap copy: the stack strings /proc/PID/cmdline shows keep the placeholder */
    }
    explicit_bzero(key, EKYA_MAX_KEY);
    free(key);
}
