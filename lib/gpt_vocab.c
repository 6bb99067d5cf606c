/* gpt_vocab.c - the bert-base-uncased vocabulary (data/bert-base-uncased-vocab.txt,
 * 30,522 tokens) built into the binary, so `prefixdec train` can start a new
 * model without any other file: WSAC's decoder emits BERT ids (wsac.md C).
 * The path is relative to the top of the source tree, where make runs. */
#include <stddef.h>

__asm__(".section .rodata\n"
        ".balign 16\n"
        "gpt_builtin_vocab_bytes:\n"
        ".incbin \"data/bert-base-uncased-vocab.txt\"\n"
        "gpt_builtin_vocab_bytes_end:\n"
        ".byte 0\n"
        ".previous\n");

extern const char gpt_builtin_vocab_bytes[], gpt_builtin_vocab_bytes_end[];

const char *gpt_builtin_vocab(size_t *len) {
    *len = (size_t)(gpt_builtin_vocab_bytes_end - gpt_builtin_vocab_bytes);
    return gpt_builtin_vocab_bytes;
}
