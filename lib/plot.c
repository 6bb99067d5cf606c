/* plot.c - SVG scatter plots (see plot.h). */
#define _POSIX_C_SOURCE 200809L
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

static void esc(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else fputc(*s, f);
    }
}

int plot_svg(const char *path, const char *title, const char *xlabel, const char *ylabel, const plot_panel *p,
             int np) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int k = 0; k < np; k++)
        for (int s = 0; s < p[k].ns; s++)
            for (int i = 0; i < p[k].s[s].n; i++) {
                double x = p[k].s[s].xy[2 * i], y = p[k].s[s].xy[2 * i + 1];
                x0 = fmin(x0, x), x1 = fmax(x1, x), y0 = fmin(y0, y), y1 = fmax(y1, y);
            }
    if (!(x1 > x0)) x0 -= 1, x1 += 1;
    if (!(y1 > y0)) y0 -= 1, y1 += 1;
    double mx = 0.05 * (x1 - x0), my = 0.05 * (y1 - y0);
    x0 -= mx, x1 += mx, y0 -= my, y1 += my;
    const int W = 460, H = 460, L = 50, T = 60, GAP = 30, B = 80;
    int width = L + np * W + (np - 1) * GAP + 20, height = T + H + B;
    char *tmp;
    FILE *f = atomic_open(path, &tmp);
    if (!f) return -1;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
               "font-size=\"13\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", width, height);
    fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"16\" text-anchor=\"middle\">", width / 2);
    esc(f, title);
    fputs("</text>\n", f);
    for (int k = 0; k < np; k++) {
        int ox = L + k * (W + GAP);
        fprintf(f, "<g>\n<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", ox, T,
                W, H);
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", ox + W / 2, T - 8);
        esc(f, p[k].title ? p[k].title : "");
        fputs("</text>\n", f);
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", ox + W / 2, T + H + 20);
        esc(f, xlabel);
        fputs("</text>\n", f);
        if (k == 0) {
            fprintf(f, "<text transform=\"translate(%d,%d) rotate(-90)\" text-anchor=\"middle\">", L - 12, T + H / 2);
            esc(f, ylabel);
            fputs("</text>\n", f);
        }
        for (int s = 0; s < p[k].ns; s++) {
            const plot_series *ser = &p[k].s[s];
            fprintf(f, "<g fill=\"%s\" fill-opacity=\"0.55\">\n", ser->color);
            for (int i = 0; i < ser->n; i++) {
                double x = ox + (ser->xy[2 * i] - x0) / (x1 - x0) * W;
                double y = T + H - (ser->xy[2 * i + 1] - y0) / (y1 - y0) * H;
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.2\"/>\n", x, y);
            }
            fputs("</g>\n", f);
            int lx = ox + 10 + s * (W / 2), ly = T + H + 45;
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>"
                       "<text x=\"%d\" y=\"%d\">", lx, ly - 9, ser->color, lx + 14, ly);
            esc(f, ser->label);
            fprintf(f, " (%d)</text>\n", ser->n);
        }
        fputs("</g>\n", f);
    }
    fputs("</svg>\n", f);
    return atomic_commit(f, tmp, path);
}
