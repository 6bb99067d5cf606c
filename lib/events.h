/* events.h - event recall of captions in the sound world (`score events`).
 *
 * A scene's sounds are its background and its events, as scripts/world.py
 * writes them to SPLIT_events.jsonl (one JSON object a line: "file_name",
 * "background": {"cls": ...}, "events": [{"cls": ...}, ...]); the key of a
 * scene is its file_name, the key wav2mel gives the clip. A class is named
 * by a caption when one of the caption's tokens is one of the class's words
 * (classes.tsv: class<TAB>role<TAB>word,word,...<TAB>...; '#' lines are
 * comments). Tokens are made as the world's caption checker
 * (tests/py/test_world.py) makes them: Python's
 * caption.lower().replace(",", " ").replace(".", " ").split(), i.e. ',' and
 * '.' become spaces, words are split at (Unicode) white space, letters are
 * lower-cased (ASCII, and U+212A KELVIN SIGN, the one non-ASCII character
 * Python lower-cases to ASCII). */
#ifndef WSAC_EVENTS_H
#define WSAC_EVENTS_H

#include <stddef.h>

typedef struct {
    int n;         /* classes, in table order */
    char **name;
    int nw;        /* words, sorted */
    char **word;
    int *word_cls;
} ev_classes;

enum { EV_BG = 1, EV_FG = 2 };

typedef struct {
    char *key;
    int n;         /* distinct classes heard */
    int *cls;      /* class indices, in order of first appearance */
    unsigned char *role; /* EV_BG | EV_FG per class */
    long line;
} ev_scene;

typedef struct {
    ev_scene *s;
    int n, cap;
    int *order;    /* indices sorted by key */
    long bad;      /* malformed lines: named on stderr, skipped */
} ev_scenes;

/* Read the class table. Returns 0, or -1 with the reason in err (unreadable,
 * a malformed line, a word of two classes, a class twice, no class). */
int ev_classes_load(ev_classes *c, const char *path, char *err, size_t errlen);
int ev_class_find(const ev_classes *c, const char *name); /* class by name, -1 */
int ev_word_find(const ev_classes *c, const char *word);  /* class of a word, -1 */
void ev_classes_free(ev_classes *c);

/* Read SPLIT_events.jsonl. A line that is not such an object, names a class
 * the table does not know, or repeats a key is named on stderr (with its
 * line number) and skipped (s->bad). Returns 0, or -1 with the reason in err
 * (unreadable file). */
int ev_scenes_load(ev_scenes *s, const ev_classes *c, const char *path, char *err, size_t errlen);
int ev_scene_find(const ev_scenes *s, const char *key); /* -1 if none */
void ev_scenes_free(ev_scenes *s);

/* Set named[k] = 1 for every class k the caption names (named[] has c->n
 * entries, zeroed by the caller). Returns the number of classes named. */
int ev_named(const ev_classes *c, const char *caption, unsigned char *named);

/* The tokens of caption as the rule above makes them, joined by single
 * spaces (malloc'ed). */
char *ev_tokens(const char *caption);

#endif
