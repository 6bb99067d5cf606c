/* plot.h - scatter plots as SVG (gapshift plot: the paper's Fig. 2-3). */
#ifndef WSAC_PLOT_H
#define WSAC_PLOT_H

typedef struct {
    const double *xy;   /* [n, 2] */
    int n;
    const char *label;
    const char *color;  /* CSS colour */
} plot_series;

typedef struct {
    const char *title;
    plot_series s[6];
    int ns;
} plot_panel;

/* Panels side by side with shared axes; returns 0 or -1 with errno set.
 * Written atomically (temporary file, then rename). */
int plot_svg(const char *path, const char *title, const char *xlabel, const char *ylabel, const plot_panel *p,
             int np);

#endif
