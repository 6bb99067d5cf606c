/* embset.h - a set of embeddings read whole from a stream: memories for
 * nnproj, the two modalities for gapshift. */
#ifndef WSAC_EMBSET_H
#define WSAC_EMBSET_H

typedef struct {
    int n, dim;
    float *x;      /* [n, dim], each row L2-normalised when loaded with normalise=1 */
    char **keys;   /* [n] */
    char **texts;  /* [n] the "text" field, or NULL entries */
    long skipped;  /* records named on stderr and left out */
} embset;

/* Reads every record's "emb" (f32 [D]) from the stream at path ("-": stdin).
 * Records without a usable emb (missing, wrong width, NaN/inf, zero vector)
 * are named on stderr and skipped. Returns 0, or -1 with a reason in err
 * (unreadable or malformed stream: fatal for the caller). */
int embset_load(embset *e, const char *path, int normalise, char *err, int errlen);
void embset_free(embset *e);

/* The audio key a caption key belongs to: "FILE#3" -> "FILE" (Clotho);
 * a key without '#' is its own group. Writes into buf. */
const char *group_key(const char *key, char *buf, int len);

#endif
