/* test_cli.c — the `magna` command (src/cli/magna.c), run as a program next to this test in the build folder:
 * train on models/housing-mlp.ini for 5 epochs (exit 0, the key=value line, the checkpoint and the log),
 * 6 epochs straight vs 25 steps + `--resume` in a new process (a dropout model with a cosine warm-up: the same
 * weights byte for byte), SIGINT/SIGTERM to a training child (exit 130/143, a checkpoint that resumes),
 * eval of that checkpoint giving the same test RMSE, predict on CSV (housing) and IDX (a small Fashion-MNIST
 * MLP: its accuracy over the rows eval scores is eval's), summary of every model file in models/ (GPT-2 124M's
 * 124,475,904 parameters), --set, GPT-2 shrunk by --set trained 2 steps on random tokens, --version and --help, and malformed model files each rejected with their own message naming file and line. Language models
 * on a tiny corpus written here (a GPT and an LSTM, 40 steps) and the words -> digits seq2seq (60 steps): train,
 * eval, stop + --resume (the same weights), generate twice with one seed (the same text), the misuses and the
 * malformed language-model files, each with its own message. */
#include "check.h"
#include "magna.h"

#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char magna[PATH_MAX + 16], root[PATH_MAX], tmp[64];

/* Runs `magna ARGS` with stderr into the output; returns the exit status and the output in out. */
static int run(const char *args, char *out, size_t n) {
    char cmd[2 * PATH_MAX];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", magna, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t used = 0, got;
    while (used + 1 < n && (got = fread(out + used, 1, n - 1 - used, p)) > 0) used += got;
    out[used] = 0;
    char sink[4096];
    while (fread(sink, 1, sizeof sink, p) > 0) {}
    const int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The last non-empty line of s, into line. */
static void last_line(const char *s, char *line, size_t n) {
    size_t len = strlen(s);
    while (len > 0 && s[len - 1] == '\n') len--;
    size_t start = len;
    while (start > 0 && s[start - 1] != '\n') start--;
    snprintf(line, n, "%.*s", (int)(len - start), s + start);
}

static double value_of(const char *line, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "%s=", key);
    const char *p = strstr(line, k);
    return p ? strtod(p + strlen(k), NULL) : -1;
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static char out[1 << 20];

static void test_train_eval(void) {
    char args[2 * PATH_MAX], line[4096], line2[4096], path[PATH_MAX + 64];
    snprintf(args, sizeof args, "train '%s/models/housing-mlp.ini' --epochs 5 --threads 2 --out '%s/run'", root, tmp);
    int rc = run(args, out, sizeof out);
    CHECK(rc == 0, "magna train exits 0 (got %d):\n%s", rc, out);
    last_line(out, line, sizeof line);
    printf("train: %s\n", line);
    const double rmse = value_of(line, "test_rmse");
    CHECK(rmse > 0 && rmse < 30, "a test_rmse in the key=value line: %s", line);
    CHECK(strstr(line, "test_r2=") && strstr(line, "epochs=5 ") && strstr(line, "seed=3 "),
          "test_r2, epochs=5 and seed=3 in: %s", line);
    snprintf(path, sizeof path, "%s/run/model.safetensors", tmp);
    CHECK(exists(path), "%s written", path);
    snprintf(path, sizeof path, "%s/run/logs/log.csv", tmp);
    CHECK(exists(path), "%s written", path);

    snprintf(args, sizeof args, "eval '%s/models/housing-mlp.ini' --weights '%s/run/model.safetensors'", root, tmp);
    rc = run(args, out, sizeof out);
    CHECK(rc == 0, "magna eval exits 0 (got %d):\n%s", rc, out);
    last_line(out, line2, sizeof line2);
    printf("eval: %s\n", line2);
    CHECK(value_of(line2, "test_rmse") == rmse, "eval's test_rmse %g is train's %g", value_of(line2, "test_rmse"),
          rmse);

    snprintf(args, sizeof args, "eval '%s/models/housing-mlp.ini' --weights '%s/nothing.safetensors'", root, tmp);
    rc = run(args, out, sizeof out);
    CHECK(rc != 0 && strstr(out, "nothing.safetensors"), "eval of a missing file fails naming it (rc %d): %s", rc,
          out);
}

static bool same_file(const char *a, const char *b) {
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

/* housing-mlp.ini with dropout after the hidden layer and a cosine schedule with warm-up: everything a
 * resume must carry (shuffling, the dropout counter, Adam's moments, the schedule's position). */
static void write_dropout_model(const char *path) {
    char src[PATH_MAX + 64];
    snprintf(src, sizeof src, "%s/models/housing-mlp.ini", root);
    FILE *in = fopen(src, "r"), *o = fopen(path, "w");
    CHECK(in && o, "copy %s", src);
    if (!in || !o) return;
    char line[1024];
    while (fgets(line, sizeof line, in) && strncmp(line, "[model]", 7) != 0) fputs(line, o); /* its [data] */
    fputs("[model]\ninput = 13\n\n[layer]\ntype = dense\nunits = 64\nactivation = relu\n\n[layer]\ntype = dropout\n"
          "rate = 0.3\n\n[layer]\ntype = dense\nunits = 1\n\n[train]\nloss = mse\noptimizer = adam\nlr = 1e-3\n"
          "batch = 32\nepochs = 200\nmetrics = rmse, mae, r2\nseed = 3\nschedule = cosine\nwarmup = 5\n",
          o);
    fclose(in), fclose(o);
}

/* 6 epochs straight vs 25 steps (mid-epoch 2), stopped, resumed in a new process from the checkpoint alone. */
static void test_resume(void) {
    char model[PATH_MAX], args[3 * PATH_MAX], a[PATH_MAX + 64], b[PATH_MAX + 64], line[4096];
    snprintf(model, sizeof model, "%s/dropout.ini", tmp);
    write_dropout_model(model);
    snprintf(args, sizeof args, "summary '%s'", model);
    int rc = run(args, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "Total params: 961\n") && strstr(out, "3 layers"), "the dropout model builds (rc %d): %s",
          rc, out);
    snprintf(args, sizeof args, "train '%s' --epochs 6 --threads 1 --out '%s/straight'", model, tmp);
    rc = run(args, out, sizeof out);
    CHECK(rc == 0, "straight run (rc %d): %s", rc, out);
    snprintf(args, sizeof args, "train '%s' --epochs 6 --threads 1 --out '%s/split' --steps 25 --save-every 10 --keep 1",
             model, tmp);
    rc = run(args, out, sizeof out);
    last_line(out, line, sizeof line);
    CHECK(rc == 0 && strstr(out, "stopped at step 25") && strstr(line, "step=25 "), "stopped at 25 (rc %d): %s", rc,
          out);
    snprintf(a, sizeof a, "%s/split/checkpoints/step-000000025.safetensors", tmp);
    snprintf(b, sizeof b, "%s/split/checkpoints/step-000000020.safetensors", tmp);
    CHECK(exists(a) && !exists(b), "--keep 1 kept step 25 alone");
    snprintf(args, sizeof args, "train --resume '%s/split/checkpoints' --threads 1", tmp);
    rc = run(args, out, sizeof out);
    last_line(out, line, sizeof line);
    CHECK(rc == 0 && strstr(out, "resuming from") && strstr(line, "step=78 ") && strstr(line, "epochs=6 "),
          "resumed to the end (rc %d): %s", rc, out);
    snprintf(a, sizeof a, "%s/straight/model.safetensors", tmp);
    snprintf(b, sizeof b, "%s/split/model.safetensors", tmp);
    CHECK(same_file(a, b), "the resumed run's weights are the straight run's, byte for byte");
    snprintf(a, sizeof a, "%s/straight/logs/log.csv", tmp);
    snprintf(b, sizeof b, "%s/split/logs/log.csv", tmp);
    CHECK(same_file(a, b), "and its log.csv (continued, not restarted)");
    snprintf(a, sizeof a, "%s/straight/checkpoints/step-000000078.safetensors", tmp);
    snprintf(b, sizeof b, "%s/split/checkpoints/step-000000078.safetensors", tmp);
    CHECK(exists(a) && exists(b), "both runs end with a step-78 checkpoint");

    /* a checkpoint that does not fit: another model file */
    snprintf(args, sizeof args, "train '%s/models/iris-mlp.ini' --resume '%s/split/checkpoints' --threads 1", root, tmp);
    rc = run(args, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "resume") && strstr(out, "shape"), "iris from a housing checkpoint (rc %d): %s", rc,
          out);
    snprintf(args, sizeof args, "train --resume '%s/nothing'", tmp);
    rc = run(args, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "nothing") && strstr(out, "cannot open"), "resume from nothing (rc %d): %s", rc, out);
}

/* SIGINT and SIGTERM: the child saves a checkpoint at the end of its step and exits 128 + the signal. */
static void test_signal(int sig, int want_rc) {
    char model[PATH_MAX + 64], outdir[PATH_MAX], log[PATH_MAX], ck[PATH_MAX + 32];
    snprintf(model, sizeof model, "%s/models/housing-mlp.ini", root);
    snprintf(outdir, sizeof outdir, "%s/sig%d", tmp, sig);
    snprintf(log, sizeof log, "%s/sig%d.log", tmp, sig);
    snprintf(ck, sizeof ck, "%s/checkpoints", outdir);
    fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(log, "w", stdout) || dup2(fileno(stdout), 2) < 0) _exit(99);
        execl(magna, magna, "train", model, "--epochs", "1000000", "--threads", "1", "--out", outdir, (char *)NULL);
        _exit(98);
    }
    CHECK(pid > 0, "fork");
    if (pid <= 0) return;
    char first[PATH_MAX + 64];
    snprintf(first, sizeof first, "%s/best.safetensors", ck);
    for (int i = 0; i < 3000 && !exists(first); i++) usleep(10000); /* training has started: an epoch is done */
    CHECK(exists(first), "the child trains (%s)", first);
    kill(pid, sig);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == want_rc, "exit status %d after signal %d (want %d)",
          WIFEXITED(status) ? WEXITSTATUS(status) : -1, sig, want_rc);
    size_t len = 0;
    FILE *f = fopen(log, "r");
    if (f) len = fread(out, 1, sizeof out - 1, f), fclose(f);
    out[len] = 0;
    const char *msg = strstr(out, "interrupted by");
    CHECK(msg && strstr(msg, sig == SIGINT ? "SIGINT" : "SIGTERM") && strstr(msg, "--resume"),
          "one line saying so: %s", msg ? msg : out + (len > 400 ? len - 400 : 0));
    /* the checkpoint it names resumes (a few steps more) */
    char args[3 * PATH_MAX], line[4096];
    long long at = -1;
    if (msg && (msg = strstr(msg, "at step "))) at = atoll(msg + 8);
    CHECK(at > 0, "the step it stopped at");
    snprintf(args, sizeof args, "train --resume '%s' --threads 1 --steps %lld", ck, at + 3);
    const int rc = run(args, out, sizeof out);
    last_line(out, line, sizeof line);
    char want[64];
    snprintf(want, sizeof want, "step=%lld ", at + 3);
    CHECK(rc == 0 && strstr(out, "resuming from") && strstr(line, want), "resumed from the signal's checkpoint (rc %d): %s",
          rc, line);
}

/* Lines of a file (0 when it cannot be read), and its first line into `head`. */
static long count_lines(const char *path, char *head, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    long lines = 0;
    int c, prev = '\n';
    size_t k = 0;
    while ((c = fgetc(f)) != EOF) {
        if (lines == 0 && c != '\n' && k + 1 < n) head[k++] = (char)c;
        if (c == '\n') lines++;
        prev = c;
    }
    if (prev != '\n') lines++;
    head[k < n ? k : n - 1] = 0;
    fclose(f);
    return lines;
}

/* Housing (CSV in, after test_train_eval's run) and Fashion-MNIST (IDX in): predictions agree with eval. */
static void test_predict(void) {
    char args[4 * PATH_MAX], in[PATH_MAX], pred[PATH_MAX], head[256], line[4096];
    /* the whole Boston table as a user would have it (scikit-learn's copy has a line of counts first) */
    snprintf(in, sizeof in, "%s/boston.csv", tmp);
    snprintf(args, sizeof args, "tail -n +2 /usr/lib/python3/dist-packages/sklearn/datasets/data/boston_house_prices.csv > '%s'",
             in);
    CHECK(system(args) == 0, "%s", args);
    snprintf(pred, sizeof pred, "%s/pred.csv", tmp);
    snprintf(args, sizeof args, "predict '%s/models/housing-mlp.ini' --weights '%s/run/model.safetensors' --input '%s' "
             "--output '%s'", root, tmp, in, pred);
    int rc = run(args, out, sizeof out);
    last_line(out, line, sizeof line);
    CHECK(rc == 0 && strstr(line, "rows=506 outputs=1"), "predict (rc %d): %s", rc, out);
    CHECK(count_lines(pred, head, sizeof head) == 507 && strcmp(head, "MEDV") == 0, "506 rows under 'MEDV' (%s)", head);
    /* the predictions' RMSE over all rows is near the test split's (they are standardised as in training) */
    FILE *fp = fopen(pred, "r"), *fi = fopen(in, "r");
    double sse = 0;
    int n = 0;
    char a[512], b[512];
    if (fp && fi && fgets(a, sizeof a, fp) && fgets(b, sizeof b, fi))
        while (fgets(a, sizeof a, fp) && fgets(b, sizeof b, fi)) {
            const char *medv = strrchr(b, ',');
            const double e = strtod(a, NULL) - strtod(medv + 1, NULL);
            sse += e * e, n++;
        }
    if (fp) fclose(fp);
    if (fi) fclose(fi);
    snprintf(args, sizeof args, "eval '%s/models/housing-mlp.ini' --weights '%s/run/model.safetensors'", root, tmp);
    run(args, out, sizeof out);
    last_line(out, line, sizeof line);
    const double test_rmse = value_of(line, "test_rmse"), all_rmse = n ? sqrt(sse / n) : -1;
    CHECK(n == 506 && fabs(all_rmse - test_rmse) < 0.25 * test_rmse, "RMSE over all rows %.3f, test split's %.3f",
          all_rmse, test_rmse);

    /* errors: one line, non-zero */
    snprintf(args, sizeof args, "predict '%s/models/housing-mlp.ini' --weights '%s/run/model.safetensors' --input '%s'",
             root, tmp, in);
    rc = run(args, out, sizeof out);
    CHECK(rc == 2 && strstr(out, "--output") && strchr(out, '\n') == out + strlen(out) - 1, "no --output (rc %d): %s",
          rc, out);
    snprintf(args, sizeof args, "cut -d, -f2- '%s' > '%s/nocrim.csv'", in, tmp);
    CHECK(system(args) == 0, "%s", args);
    snprintf(args, sizeof args, "predict '%s/models/housing-mlp.ini' --weights '%s/run/model.safetensors' --input "
             "'%s/nocrim.csv' --output '%s'", root, tmp, tmp, pred);
    rc = run(args, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "CRIM") && strchr(out, '\n') == out + strlen(out) - 1, "a missing column (rc %d): %s",
          rc, out);
    snprintf(args, sizeof args, "predict '%s/models/housing-mlp.ini' --weights '%s/run/logs/log.csv' --input '%s' "
             "--output '%s'", root, tmp, in, pred);
    rc = run(args, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "log.csv"), "weights that are no checkpoint (rc %d): %s", rc, out);
    snprintf(args, sizeof args, "predict '%s/models/housing-mlp.ini' --weights '%s/run/model.safetensors' --input "
             "'%s/x.idx' --output '%s'", root, tmp, tmp, pred);
    rc = run(args, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "trained on CSV rows"), "images for a CSV model (rc %d): %s", rc, out);

    /* IDX in: a small Fashion-MNIST MLP; over the first 500 test images predict's accuracy is eval's */
    const char *fm = "/usr/share/datasets/fashion-mnist";
    char model[PATH_MAX], images[PATH_MAX], labels[PATH_MAX];
    snprintf(images, sizeof images, "%s/t10k-images-idx3-ubyte.gz", fm);
    snprintf(labels, sizeof labels, "%s/t10k-labels-idx1-ubyte.gz", fm);
    if (!exists(images)) {
        printf("%s missing: skipping predict on IDX (apt-get install dataset-fashion-mnist)\n", images);
        return;
    }
    snprintf(model, sizeof model, "%s/fm.ini", tmp);
    FILE *f = fopen(model, "w");
    if (!f) return;
    fprintf(f, "[data]\nkind = idx\npath = %s\nclasses = 10\nlimit = 500\nstandardise = true\n\n[model]\ninput = 1, 28, 28\n\n"
               "[layer]\ntype = flatten\n\n[layer]\ntype = dense\nunits = 10\n\n[train]\nloss = sparse_cross_entropy\n"
               "optimizer = adam\nlr = 1e-2\nbatch = 50\nepochs = 3\nmetrics = accuracy\n", fm);
    fclose(f);
    snprintf(args, sizeof args, "train '%s' --out '%s/fm' --threads 1", model, tmp);
    rc = run(args, out, sizeof out);
    CHECK(rc == 0, "train the small Fashion-MNIST model (rc %d): %s", rc, out);
    snprintf(args, sizeof args, "eval '%s' --weights '%s/fm/model.safetensors'", model, tmp);
    rc = run(args, out, sizeof out);
    last_line(out, line, sizeof line);
    const double acc = value_of(line, "test_acc");
    CHECK(rc == 0 && acc > 0.5, "eval (rc %d): %s", rc, line);
    snprintf(args, sizeof args, "predict '%s' --weights '%s/fm/model.safetensors' --input '%s' --output '%s'", model,
             tmp, images, pred);
    rc = run(args, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "rows=10000 outputs=10"), "predict on IDX (rc %d): %s", rc, out);
    CHECK(count_lines(pred, head, sizeof head) == 10001 && strncmp(head, "class,p0,p1,", 12) == 0, "header %s", head);
    magna_idx lab;
    magna_error err;
    CHECK(magna_idx_read(labels, &lab, &err) == MAGNA_OK, "%s", err.message);
    fp = fopen(pred, "r");
    int correct = 0, rows = 0;
    double worst = 0;
    char row[1024];
    if (fp && fgets(row, sizeof row, fp))
        while (rows < 500 && fgets(row, sizeof row, fp)) {
            char *p = row;
            const long cls = strtol(p, &p, 10);
            double sum = 0;
            for (int k = 0; k < 10 && *p == ','; k++) sum += strtod(p + 1, &p);
            worst = fmax(worst, fabs(sum - 1));
            correct += cls == ((const uint8_t *)lab.data)[rows];
            rows++;
        }
    if (fp) fclose(fp);
    magna_idx_free(&lab);
    CHECK(rows == 500 && fabs((double)correct / rows - acc) < 1e-4, "predict's accuracy on the first 500 %.4f, eval's %.4f",
          rows ? (double)correct / rows : 0, acc);
    CHECK(worst < 1e-4, "probabilities sum to 1 (worst %.2g)", worst);
}

static void test_summaries(void) {
    /* the language models: char-gpt and char-lstm on fortune's 113 characters (112 and <unk>) */
    /* GPT-2 124M: 50304 x 768 tied embeddings + 1024 x 768 positions + 12 x 7,087,872 + 1536 (ln_f) */
    const char *files[] = {"housing-mlp", "iris-mlp", "digits-mlp", "fmnist-mlp", "fmnist-cnn", "char-gpt",
                           "char-lstm", "seq2seq", "gpt2-124m"};
    const char *params[] = {"Total params: 961\n", "Total params: 131\n", "Total params: 17226\n",
                            "Total params: 109386\n", "Total params: 688138\n", "Total params: 824192\n",
                            "Total params: 366001\n", "Total params: 942220\n", "Total params: 124475904\n"};
    for (int i = 0; i < 9; i++) {
        char args[PATH_MAX + 64];
        snprintf(args, sizeof args, "summary '%s/models/%s.ini'", root, files[i]);
        const int rc = run(args, out, sizeof out);
        CHECK(rc == 0 && strstr(out, params[i]), "summary of %s: exit 0 and %s(rc %d):\n%s", files[i], params[i], rc,
              out);
    }
}

static const char *GOOD_HEAD = "[data]\nkind = csv\npath = x.csv\ntarget = y\n\n[model]\ninput = 3\n\n";

/* Writes text to tmp/bad.ini, runs `magna summary` on it: non-zero, one line that holds `expect`. */
static void expect_bad(const char *text, const char *expect) {
    char path[128], args[256];
    snprintf(path, sizeof path, "%s/bad.ini", tmp);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "write %s", path);
    if (!f) return;
    fputs(text, f);
    fclose(f);
    snprintf(args, sizeof args, "summary '%s'", path);
    const int rc = run(args, out, sizeof out);
    char want[256];
    snprintf(want, sizeof want, "%s%s", path, expect);
    const char *nl = strchr(out, '\n');
    CHECK(rc == 2 && strstr(out, want) && nl && nl[1] == 0, "bad model file: exit 2 and one line with '%s' (rc %d): %s",
          want, rc, out);
}

static void test_malformed(void) {
    char text[2048];
    const char *layer = "[layer]\ntype = dense\nunits = 1\n\n"; /* lines 9-12 */
    const char *train = "[train]\nloss = mse\noptimizer = adam\nlr = 1e-3\nbatch = 8\nepochs = 2\n"; /* 13- */
    /* the good file: summary needs no data, so it passes */
    snprintf(text, sizeof text, "%s%s%s", GOOD_HEAD, layer, train);
    char path[128], args[256];
    snprintf(path, sizeof path, "%s/bad.ini", tmp);
    FILE *f = fopen(path, "w");
    if (f) fputs(text, f), fclose(f);
    snprintf(args, sizeof args, "summary '%s'", path);
    int rc = run(args, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "Total params: 4\n"), "the good file's summary (rc %d): %s", rc, out);

    snprintf(text, sizeof text, "%s[layer]\ntype = dense\nunit = 1\n\n%s", GOOD_HEAD, train);
    expect_bad(text, ":11: [layer] dense: unknown key 'unit' (it takes: type, name, units, activation, l2)");
    snprintf(text, sizeof text, "%s[layer]\ntype = dense2\nunits = 1\n\n%s", GOOD_HEAD, train);
    expect_bad(text, ":10: [layer] unknown layer type 'dense2'");
    snprintf(text, sizeof text, "%s[layer]\ntype = dense\nunits = 6x4\n\n%s", GOOD_HEAD, train);
    expect_bad(text, ":11: [layer] dense key 'units': '6x4' is not a whole number");
    snprintf(text, sizeof text, "%s%s[train]\noptimizer = adam\nlr = 1e-3\nbatch = 8\nepochs = 2\n", GOOD_HEAD, layer);
    expect_bad(text, ":13: [train] needs 'loss'");
    snprintf(text, sizeof text, "%s%s%s", GOOD_HEAD, layer, train);
    char *lr = strstr(text, "lr = 1e-3");
    memcpy(lr, "lr = fast", 9);
    expect_bad(text, ":16: [train] key 'lr': 'fast' is not a number");
    snprintf(text, sizeof text, "%s%s%s\n[trian]\n", GOOD_HEAD, layer, train);
    expect_bad(text, ":20: unknown section [trian]");
    snprintf(text, sizeof text, "%s[layer]\ntype = conv2d\nfilters = 4\nkernel = 3\npadding = full\n\n%s", GOOD_HEAD,
             train);
    expect_bad(text, ":13: [layer] conv2d key 'padding': unknown value 'full' (expected one of: same, valid)");
    snprintf(text, sizeof text, "%s%s%s", "[data]\nkind = csv\npath = x.csv\ntarget = y\n\n[model]\ninput = 3, x\n\n",
             layer, train);
    expect_bad(text, ":7: [model] key 'input': '3, x' is not a shape");
    snprintf(text, sizeof text, "%s%s%s", GOOD_HEAD, layer, train);
    memcpy(strstr(text, "loss = mse"), "loss = xxx", 10);
    expect_bad(text, ":14: [train] key 'loss': unknown value 'xxx'");
    snprintf(text, sizeof text, "%s%s%sbeta2 = 0.95\n", GOOD_HEAD, layer, train);
    memcpy(strstr(text, "adam"), "sgd ", 4);
    expect_bad(text, ":19: [train] key 'beta2': only adam and adamw take it");
}

/* The precision and init options' refusals: --fp32 with --bf16, an init scheme that does not exist. */
static void test_precision_and_init_misuse(void) {
    char args[3 * PATH_MAX];
    const char *bad[][2] = {
        {"train '%s/models/housing-mlp.ini' --fp32 --bf16", "--fp32 and --bf16: choose one"},
        {"summary '%s/models/housing-mlp.ini' --set model.init=pytorch", "[model] key 'init'"}};
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, bad[i][0], root);
        const int rc = run(args, out, sizeof out);
        CHECK(rc == 2 && strstr(out, bad[i][1]), "%s: exit 2 and '%s' (rc %d): %s", args, bad[i][1], rc, out);
    }
}

/* models/gpt2-124m.ini: its padded vocabulary, --set (in place, added, refused), a few layers of it trained 2
 * steps on random tokens with --log-steps, resumed from the checkpoint alone (which holds the overridden
 * file), and what random tokens cannot do. */
static void test_gpt2(void) {
    char args[3 * PATH_MAX], line[4096], path[PATH_MAX + 64];
    const char *small = "--set model.layers=2 --set data.context=32 --set model.d_model=32 --set model.heads=2 "
                        "--set model.d_ff=64";
    snprintf(args, sizeof args, "summary '%s/models/gpt2-124m.ini'", root);
    int rc = run(args, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "gpt.wte                      [50304, 768]") && strstr(out, "[64, 1024, 50304]"),
          "GPT-2's embedding and logits are padded to 50304 (rc %d):\n%s", rc, out);
    /* in place (pad_vocab) and added after the header (positions): no padding, no position table */
    snprintf(args, sizeof args, "summary '%s/models/gpt2-124m.ini' --set model.pad_vocab=1 --set model.positions=sinusoidal",
             root);
    rc = run(args, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "[50257, 768]") && !strstr(out, "gpt.wpe") && strstr(out, "Trainable params: 123653376\n"),
          "--set model.pad_vocab=1 --set model.positions=sinusoidal (rc %d):\n%s", rc, out);
    const char *bad[][2] = {{"--set layer.units=3", "--set 'layer.units=3': the section is data, model or train"},
                            {"--set model.layres=3", "gpt2-124m.ini (with --set):27: [model]: unknown key 'layres'"},
                            {"--set layers=3", "--set 'layers=3': expected SECTION.KEY=VALUE"},
                            {"--set model.layers=", "--set 'model.layers=': expected SECTION.KEY=VALUE"}};
    for (int i = 0; i < 4; i++) {
        snprintf(args, sizeof args, "summary '%s/models/gpt2-124m.ini' %s", root, bad[i][0]);
        rc = run(args, out, sizeof out);
        CHECK(rc == 2 && strstr(out, bad[i][1]), "%s: exit 2 and '%s' (rc %d): %s", bad[i][0], bad[i][1], rc, out);
    }

    snprintf(args, sizeof args, "train '%s/models/gpt2-124m.ini' %s --batch 2 --steps 2 --threads 2 --out '%s/gpt2' "
             "--log-steps '%s/gpt2-steps.csv'", root, small, tmp, tmp);
    rc = run(args, out, sizeof out);
    last_line(out, line, sizeof line);
    printf("gpt2, 2 layers, 2 steps: %s\n", line);
    const double loss = value_of(line, "train_loss"), uniform = log(50257.0);
    CHECK(rc == 0 && fabs(loss - uniform) < 0.5 && value_of(line, "step_ms_median") > 0 &&
              value_of(line, "tokens_per_s_median") > 0 && strstr(line, "step=2 ") && strstr(line, "context=32 "),
          "2 steps on random tokens: the loss near ln 50257 = %.3f, a median step time (rc %d): %s", uniform, rc, out);
    snprintf(path, sizeof path, "%s/gpt2-steps.csv", tmp);
    FILE *f = fopen(path, "r");
    char csv[3][128] = {"", "", ""};
    for (int i = 0; f && i < 3 && fgets(csv[i], sizeof csv[i], f); i++) {}
    if (f) fclose(f);
    CHECK(strcmp(csv[0], "step,loss,ms\n") == 0 && strncmp(csv[1], "1,10.", 5) == 0 && strncmp(csv[2], "2,10.", 5) == 0,
          "--log-steps: a header and one line a step: '%s' '%s' '%s'", csv[0], csv[1], csv[2]);
    /* the checkpoint holds the file as overridden: resumed from it alone it rebuilds the small model */
    snprintf(args, sizeof args, "train --resume '%s/gpt2/checkpoints' --steps 3 --threads 2", tmp);
    rc = run(args, out, sizeof out);
    last_line(out, line, sizeof line);
    CHECK(rc == 0 && strstr(line, "step=3 ") && strstr(line, "context=32 "), "resumed from the checkpoint (rc %d): %s",
          rc, out);

    const char *misuse[][2] = {
        {"eval '%s/models/gpt2-124m.ini' --weights x.safetensors", "random tokens: there is nothing to evaluate"},
        {"generate '%s/models/gpt2-124m.ini' --weights x.safetensors", "random tokens: it has no tokenizer"}};
    for (int i = 0; i < 2; i++) {
        char cmd[PATH_MAX + 128];
        snprintf(cmd, sizeof cmd, misuse[i][0], root);
        rc = run(cmd, out, sizeof out);
        CHECK(rc == 2 && strstr(out, misuse[i][1]), "%s: exit 2 and '%s' (rc %d): %s", cmd, misuse[i][1], rc, out);
    }
}

/* ---- language models ---------------------------------------------------------------------------- */

static char corpus[128]; /* tmp/corpus.txt */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "write %s", path);
    if (f) fputs(text, f), fclose(f);
}

/* A tiny corpus: sentences of a dozen words drawn with a fixed LCG, about 14 kB. */
static void write_corpus(void) {
    static const char *const words[] = {"the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "hat", "and", "sun"};
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", tmp);
    FILE *f = fopen(corpus, "w");
    CHECK(f != NULL, "write %s", corpus);
    if (!f) return;
    uint32_t x = 12345;
    for (int line = 0; line < 600; line++) {
        for (int w = 0; w < 6; w++) {
            x = x * 1664525u + 1013904223u;
            fprintf(f, "%s%s", w ? " " : "", words[(x >> 16) % 12]);
        }
        fputs(".\n", f);
    }
    fclose(f);
}

/* A text model file on the tiny corpus: `model` is its [model] and [layer] sections. */
static void write_lm(const char *path, const char *model, const char *optimizer) {
    char text[4096];
    snprintf(text, sizeof text,
             "[data]\nkind = text\npath = %s\ntokenizer = chars\ncontext = 16\neval_windows = 20\n\n%s\n"
             "[train]\nloss = sparse_cross_entropy\n%sbatch = 8\nsteps = 40\n",
             corpus, model, optimizer);
    write_file(path, text);
}

static const char *TINY_GPT = "[model]\nkind = gpt\nlayers = 1\nheads = 2\nd_model = 16\n";
static const char *TINY_LSTM = "[model]\nkind = sequential\n\n[layer]\ntype = embedding\nunits = 8\n\n[layer]\n"
                               "type = lstm\nunits = 16\n\n[layer]\ntype = dense\nunits = vocab\n";

/* train (the key=value line, below the uniform loss), eval of the weights (the same val_loss), 25 steps +
 * --resume (the straight run's weights byte for byte), generate twice with one seed (the same text, N
 * characters after the prompt) and once with another, from model.safetensors and from the checkpoints. */
static void test_lm(const char *name, const char *model, const char *optimizer) {
    char file[PATH_MAX], args[3 * PATH_MAX], line[4096], line2[4096], a[PATH_MAX + 64], b[PATH_MAX + 64];
    static char gen1[8192], gen2[8192];
    snprintf(file, sizeof file, "%s/%s.ini", tmp, name);
    write_lm(file, model, optimizer);
    snprintf(args, sizeof args, "train '%s' --threads 2 --out '%s/%s'", file, tmp, name);
    int rc = run(args, out, sizeof out);
    last_line(out, line, sizeof line);
    printf("%s train: %s\n", name, line);
    const double val = value_of(line, "val_loss"), bigram = value_of(line, "bigram_val_loss");
    CHECK(rc == 0 && strstr(out, "bigram baseline") && strstr(line, "step=40 ") && value_of(line, "tokens_per_s") > 0,
          "%s: train exits 0 with step=40 and tokens_per_s (rc %d):\n%s", name, rc, out);
    /* 13 characters (12 letters ... plus ' ', '.', '\n'): the uniform loss is log(vocab) */
    const double vocab = value_of(line, "vocab");
    CHECK(val > 0 && vocab > 10 && val < log(vocab) - 0.3 && bigram > 0 && bigram < val,
          "%s: val_loss %.4f below the uniform %.4f after 40 steps (and the bigram %.4f below both)", name, val,
          log(vocab), bigram);

    snprintf(args, sizeof args, "eval '%s' --weights '%s/%s/model.safetensors'", file, tmp, name);
    rc = run(args, out, sizeof out);
    last_line(out, line2, sizeof line2);
    CHECK(rc == 0 && value_of(line2, "val_loss") == val && value_of(line2, "perplexity") > 1,
          "%s: eval's val_loss is train's %.4f (rc %d): %s", name, val, rc, out);

    snprintf(args, sizeof args, "train '%s' --threads 2 --out '%s/%s-split' --steps 25", file, tmp, name);
    rc = run(args, out, sizeof out);
    last_line(out, line2, sizeof line2);
    CHECK(rc == 0 && strstr(out, "stopped at step 25") && value_of(line2, "val_loss") > 0,
          "%s: stopped at 25 with a val_loss (rc %d): %s", name, rc, out);
    snprintf(args, sizeof args, "train --resume '%s/%s-split/checkpoints' --threads 2", tmp, name);
    rc = run(args, out, sizeof out);
    last_line(out, line2, sizeof line2);
    CHECK(rc == 0 && strstr(line2, "step=40 ") && value_of(line2, "val_loss") == val,
          "%s: resumed to step 40 with the straight run's val_loss %.4f (rc %d): %s", name, val, rc, out);
    snprintf(a, sizeof a, "%s/%s/model.safetensors", tmp, name);
    snprintf(b, sizeof b, "%s/%s-split/model.safetensors", tmp, name);
    CHECK(same_file(a, b), "%s: the resumed run's weights are the straight run's, byte for byte", name);

    snprintf(args, sizeof args, "generate '%s' --weights '%s' --prompt 'the cat' --length 50 --seed 7 --top-k 5", file,
             a);
    rc = run(args, gen1, sizeof gen1);
    CHECK(rc == 0 && strncmp(gen1, "the cat", 7) == 0 && strlen(gen1) == 7 + 50 + 1,
          "%s: generate prints the prompt and 50 characters (rc %d, %zu bytes): %s", name, rc, strlen(gen1), gen1);
    printf("%s generate: %s", name, gen1);
    snprintf(args, sizeof args,
             "generate '%s' --weights '%s/%s/checkpoints' --prompt 'the cat' --length 50 --seed 7 --top-k 5", file, tmp,
             name);
    rc = run(args, gen2, sizeof gen2);
    CHECK(rc == 0 && strcmp(gen1, gen2) == 0, "%s: the same seed, the same text (from the checkpoint too): %s", name,
          gen2);
    snprintf(args, sizeof args, "generate '%s' --weights '%s' --prompt 'the cat' --length 50 --seed 8 --top-p 0.95",
             file, a);
    rc = run(args, gen2, sizeof gen2);
    CHECK(rc == 0 && strlen(gen2) == strlen(gen1) && strcmp(gen1, gen2) != 0, "%s: another seed, other text: %s",
          name, gen2);
    snprintf(args, sizeof args, "generate '%s' --weights '%s' --length 30 --temperature 0", file, a);
    rc = run(args, gen2, sizeof gen2);
    CHECK(rc == 0 && gen2[0] == '\n' && strlen(gen2) == 1 + 30 + 1, "%s: greedy from the default prompt: %s", name,
          gen2);
}

static void test_seq2seq(void) {
    char file[PATH_MAX], args[3 * PATH_MAX], line[4096], line2[4096], g1[256], g2[256];
    snprintf(file, sizeof file, "%s/s2s.ini", tmp);
    write_file(file, "[data]\nkind = numbers\ntest = 50\n\n[model]\nkind = seq2seq\nlayers = 1\nheads = 2\n"
                     "d_model = 16\n\n[train]\nloss = sparse_cross_entropy\noptimizer = adamw\nlr = 3e-3\nbatch = 16\n"
                     "steps = 60\nbeam = 2\n");
    snprintf(args, sizeof args, "train '%s' --threads 2 --out '%s/s2s'", file, tmp);
    int rc = run(args, out, sizeof out);
    last_line(out, line, sizeof line);
    printf("seq2seq train: %s\n", line);
    const double em = value_of(line, "exact_match"), loss = value_of(line, "test_loss");
    CHECK(rc == 0 && em >= 0 && em <= 1 && value_of(line, "greedy_exact_match") >= 0 && strstr(line, "beam=2 ") &&
              value_of(line, "tokens_per_s") > 0,
          "seq2seq: train exits 0 with exact_match, greedy_exact_match, beam=2, tokens_per_s (rc %d):\n%s", rc, out);
    CHECK(loss > 0 && loss < log(12.0) - 0.1, "seq2seq: test loss %.4f below the uniform %.4f after 60 steps", loss,
          log(12.0));
    snprintf(args, sizeof args, "eval '%s' --weights '%s/s2s/model.safetensors'", file, tmp);
    rc = run(args, out, sizeof out);
    last_line(out, line2, sizeof line2);
    CHECK(rc == 0 && value_of(line2, "exact_match") == em && value_of(line2, "test_loss") == loss,
          "seq2seq: eval gives train's exact_match and test_loss (rc %d): %s", rc, out);
    snprintf(args, sizeof args, "generate '%s' --weights '%s/s2s/model.safetensors' --prompt 'forty-two' --beam 3", file,
             tmp);
    const int rc1 = run(args, g1, sizeof g1), rc2 = run(args, g2, sizeof g2);
    /* an untrained model may write no number: then exit 1 with its reason, but the same twice */
    CHECK(((rc1 == 0 && g1[0] >= '0' && g1[0] <= '9') || (rc1 == 1 && strstr(g1, "no number"))) && rc1 == rc2 &&
              strcmp(g1, g2) == 0,
          "seq2seq: generate --beam 3 prints digits, the same twice (rc %d): %s", rc1, g1);
    snprintf(args, sizeof args, "generate '%s' --weights '%s/s2s/model.safetensors' --prompt 'Forty'", file, tmp);
    rc = run(args, out, sizeof out);
    CHECK(rc == 2 && strstr(out, "'F'") && strstr(out, "position 0"), "seq2seq: a prompt it cannot read (rc %d): %s",
          rc, out);
}

/* The other tokenizers: bytes (256 ids) and BPE (trained to 300 ids), 10 steps each, and generate from them. */
static void test_lm_tokenizers(void) {
    const char *toks[] = {"tokenizer = bytes", "tokenizer = bpe\nvocab = 300"};
    /* BPE stops early when no pair occurs twice: the tiny corpus has fewer than 300 ids' worth */
    const double lo[] = {256, 257}, hi[] = {256, 300};
    for (int i = 0; i < 2; i++) {
        char file[PATH_MAX], text[2048], args[3 * PATH_MAX], line[4096], gen[4096];
        snprintf(file, sizeof file, "%s/tok%d.ini", tmp, i);
        snprintf(text, sizeof text,
                 "[data]\nkind = text\npath = %s\n%s\ncontext = 8\neval_windows = 4\n\n%s\n[train]\n"
                 "loss = sparse_cross_entropy\noptimizer = adam\nlr = 1e-3\nbatch = 4\nsteps = 10\n",
                 corpus, toks[i], TINY_GPT);
        write_file(file, text);
        snprintf(args, sizeof args, "train '%s' --threads 2 --out '%s/tok%d'", file, tmp, i);
        int rc = run(args, out, sizeof out);
        last_line(out, line, sizeof line);
        const double v = value_of(line, "vocab");
        CHECK(rc == 0 && v >= lo[i] && v <= hi[i] && value_of(line, "val_loss") > 0, "%s: train (rc %d): %s", toks[i],
              rc, line);
        snprintf(args, sizeof args, "generate '%s' --weights '%s/tok%d/model.safetensors' --prompt 'the' --length 5",
                 file, tmp, i);
        rc = run(args, gen, sizeof gen);
        CHECK(rc == 0 && strncmp(gen, "the", 3) == 0 && strlen(gen) > 3 + 5, "%s: generate (rc %d): %s", toks[i], rc,
              gen);
    }
}

/* Commands that do not fit the model: each its own one-line error and exit status. */
static void test_lm_misuse(void) {
    char args[3 * PATH_MAX];
    snprintf(args, sizeof args, "generate '%s/models/housing-mlp.ini' --weights '%s/run/model.safetensors'", root, tmp);
    int rc = run(args, out, sizeof out);
    CHECK(rc == 2 && strstr(out, "not a language model"), "generate on housing (rc %d): %s", rc, out);
    snprintf(args, sizeof args, "generate '%s/gpt.ini' --weights '%s/run/model.safetensors'", tmp, tmp);
    rc = run(args, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "no tokenizer"), "generate with housing's weights (rc %d): %s", rc, out);
    snprintf(args, sizeof args, "generate '%s/gpt.ini'", tmp);
    rc = run(args, out, sizeof out);
    CHECK(rc == 2 && strstr(out, "--weights"), "generate without weights (rc %d): %s", rc, out);
    snprintf(args, sizeof args, "generate '%s/gpt.ini' --weights '%s/gpt/model.safetensors' --top-p 1.5", tmp, tmp);
    rc = run(args, out, sizeof out);
    CHECK(rc == 2 && strstr(out, "--top-p"), "--top-p 1.5 (rc %d): %s", rc, out);
    snprintf(args, sizeof args, "generate '%s/gpt.ini' --weights '%s/gpt/model.safetensors' --beam 2", tmp, tmp);
    rc = run(args, out, sizeof out);
    CHECK(rc == 2 && strstr(out, "--beam is for seq2seq"), "--beam on a text model (rc %d): %s", rc, out);
    snprintf(args, sizeof args, "train '%s/gpt.ini' --epochs 3", tmp);
    rc = run(args, out, sizeof out);
    CHECK(rc == 2 && strstr(out, "trains by steps"), "--epochs on a language model (rc %d): %s", rc, out);
    snprintf(args, sizeof args, "predict '%s/gpt.ini' --weights w --input x.csv --output y.csv", tmp);
    rc = run(args, out, sizeof out);
    CHECK(rc == 2 && strstr(out, "magna generate"), "predict on a language model (rc %d): %s", rc, out);
    snprintf(args, sizeof args, "eval '%s/s2s.ini' --weights '%s/gpt/model.safetensors'", tmp, tmp);
    rc = run(args, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "gpt/model.safetensors"), "seq2seq eval of GPT weights (rc %d): %s", rc, out);
    rc = run("generate --help", out, sizeof out);
    CHECK(rc == 0 && strstr(out, "usage: magna generate"), "generate --help (rc %d): %s", rc, out);
}

/* Malformed language-model files: each its own message naming the file and the line. */
static void test_lm_malformed(void) {
    char text[2048], head[512];
    /* lines 1-6: [data]; 8-: [model] */
    snprintf(head, sizeof head, "[data]\nkind = text\npath = %s\ntokenizer = chars\ncontext = 16\n\n", corpus);
    const char *gpt = "[model]\nkind = gpt\nlayers = 1\nheads = 2\nd_model = 16\n\n";           /* 7-12 */
    const char *train = "[train]\nloss = sparse_cross_entropy\noptimizer = adam\nlr = 1e-3\nbatch = 4\nsteps = 5\n";
    snprintf(text, sizeof text, "%s%s%s", head, gpt, train); /* [train] at 13 */
    char path[128], args[256];
    snprintf(path, sizeof path, "%s/bad.ini", tmp);
    write_file(path, text);
    snprintf(args, sizeof args, "summary '%s'", path);
    int rc = run(args, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "gpt model") && strstr(out, "Total params:"), "the good text file's summary (rc %d): %s",
          rc, out);

    snprintf(text, sizeof text, "[data]\nkind = text\npath = %s\ntokenizer = bpe\n\n%s%s", corpus, gpt, train);
    expect_bad(text, ":1: [data] tokenizer = bpe needs 'vocab'");
    snprintf(text, sizeof text, "[data]\nkind = text\npath = %s\nvocab = 300\n\n%s%s", corpus, gpt, train);
    expect_bad(text, ":4: [data] key 'vocab': only tokenizer = bpe takes it");
    snprintf(text, sizeof text, "[data]\nkind = text\ntokenizer = bytes\nunk = false\n\n%s%s", gpt, train);
    expect_bad(text, ":4: [data] key 'unk': only tokenizer = chars takes it");
    snprintf(text, sizeof text, "[data]\nkind = text\ncontext = 0\n\n%s%s", gpt, train);
    expect_bad(text, ":3: [data] key 'context': 0 is out of range");
    snprintf(text, sizeof text, "[data]\nkind = text\ntokenizer = words\n\n%s%s", gpt, train);
    expect_bad(text, ":3: [data] key 'tokenizer': unknown value 'words' (expected one of: bytes, chars, bpe)");
    snprintf(text, sizeof text, "[data]\nkind = text\ntarget = y\n\n%s%s", gpt, train);
    expect_bad(text, ":3: [data]: unknown key 'target' (it takes: kind, path");
    snprintf(text, sizeof text, "%s[model]\nkind = seq2seq\n\n%s", head, train);
    expect_bad(text, ":8: [model] key 'kind': seq2seq reads numbers in words");
    snprintf(text, sizeof text, "%s[model]\nkind = gpt\nlayers = 1\nheads = 3\nd_model = 16\n\n%s", head, train);
    expect_bad(text, ":10: [model] key 'heads': d_model 16 does not split into 3 heads");
    snprintf(text, sizeof text, "%s[model]\nkind = gpt\nlayers = 1\nd_model = 16\n\n%s", head, train);
    expect_bad(text, ":7: [model] needs 'heads'");
    snprintf(text, sizeof text, "%s[model]\nkind = gpt\nlayers = 1\nheads = 2\nd_model = 16\ninput = 3\n\n%s", head,
             train);
    expect_bad(text, ":12: [model]: unknown key 'input' (it takes: kind, layers, heads, d_model, d_ff, positions, dropout, "
               "pad_vocab)");
    snprintf(text, sizeof text, "%s%s[layer]\ntype = dense\nunits = 4\n\n%s", head, gpt, train);
    expect_bad(text, ":13: [layer] a gpt model takes no [layer] sections");
    snprintf(text, sizeof text, "%s[model]\nkind = sequential\n\n[layer]\ntype = dense\nunits = vocab\n\n%s", head,
             train);
    expect_bad(text, ":10: [layer] dense: a text model's first layer is an embedding");
    snprintf(text, sizeof text, "%s[model]\nkind = sequential\n\n[layer]\ntype = embedding\nunits = 8\n\n[layer]\n"
                                "type = embedding\nunits = 8\n\n%s",
             head, train);
    expect_bad(text, ":14: [layer] embedding: the embedding is the first layer");
    snprintf(text, sizeof text, "%s%s[train]\nloss = sparse_cross_entropy\noptimizer = adam\nlr = 1e-3\nbatch = 4\n"
                                "epochs = 5\n",
             head, gpt);
    expect_bad(text, ":18: [train]: unknown key 'epochs' (it takes: loss, optimizer, lr, momentum, beta1, beta2, eps, "
                     "weight_decay, l2, batch, steps,");
    snprintf(text, sizeof text, "%s%s[train]\nloss = sparse_cross_entropy\noptimizer = adam\nlr = 1e-3\nbatch = 4\n",
             head, gpt);
    expect_bad(text, ":13: [train] needs 'steps'");
    snprintf(text, sizeof text, "%s%s[train]\nloss = mse\noptimizer = adam\nlr = 1e-3\nbatch = 4\nsteps = 5\n", head,
             gpt);
    expect_bad(text, ":14: [train] key 'loss': a language model predicts token ids: sparse_cross_entropy");
    snprintf(text, sizeof text, "%s%s%s\nbeam = 2\n", head, gpt, train);
    expect_bad(text, ":20: [train]: unknown key 'beam'");
    snprintf(text, sizeof text, "[data]\nkind = numbers\n\n[model]\nkind = gpt\n\n%s", train);
    expect_bad(text, ":5: [model] key 'kind': [data] kind = numbers trains the encoder-decoder");
    snprintf(text, sizeof text, "[data]\nkind = numbers\ntest = 0\n\n[model]\nkind = seq2seq\n\n%s", train);
    expect_bad(text, ":3: [data] key 'test': 0 is out of range");
    snprintf(text, sizeof text, "%s[layer]\ntype = embedding\nunits = 4\n\n[layer]\ntype = dense\nunits = 1\n\n"
                                "[train]\nloss = mse\noptimizer = adam\nlr = 1e-3\nbatch = 8\nepochs = 2\n",
             GOOD_HEAD);
    expect_bad(text, ":9: [layer] embedding: an embedding reads token ids, which only [data] kind = text gives");
    snprintf(text, sizeof text, "%s[layer]\ntype = dense\nunits = vocab\n\n"
                                "[train]\nloss = mse\noptimizer = adam\nlr = 1e-3\nbatch = 8\nepochs = 2\n",
             GOOD_HEAD);
    expect_bad(text, ":11: [layer] dense key 'units': 'vocab' is not a whole number");
}

int main(void) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0, "readlink /proc/self/exe");
    if (n <= 0) return 1;
    self[n] = 0;
    *strrchr(self, '/') = 0;
    snprintf(magna, sizeof magna, "%s/magna", self);
    snprintf(root, sizeof root, "%s", __FILE__); /* CMake passes the absolute path of this file */
    *strrchr(root, '/') = 0;
    *strrchr(root, '/') = 0;
    snprintf(tmp, sizeof tmp, "/tmp/magna_test_cli.XXXXXX");
    CHECK(mkdtemp(tmp) != NULL, "mkdtemp");

    int rc = run("--version", out, sizeof out);
    CHECK(rc == 0 && strstr(out, "magna"), "--version (rc %d): %s", rc, out);
    const char *cmds[] = {"--help", "train --help", "eval --help", "predict --help", "summary --help",
                          "generate --help"};
    for (int i = 0; i < 6; i++) {
        rc = run(cmds[i], out, sizeof out);
        CHECK(rc == 0 && strstr(out, "usage: magna"), "magna %s (rc %d): %s", cmds[i], rc, out);
    }
    rc = run("fly", out, sizeof out);
    CHECK(rc == 2 && strstr(out, "unknown command 'fly'"), "an unknown command (rc %d): %s", rc, out);
    rc = run("train", out, sizeof out);
    CHECK(rc == 2 && strstr(out, "no model file"), "train without a file (rc %d): %s", rc, out);
    rc = run("train x.ini --epochs 0", out, sizeof out);
    CHECK(rc == 2 && strstr(out, "--epochs"), "--epochs 0 (rc %d): %s", rc, out);
    /* --device: a name it does not know is a usage error; cuda, which cannot train yet (and has no device or
     * no CUDA build here), fails at once with one line that says why */
    char dev_args[2 * PATH_MAX + 64];
    snprintf(dev_args, sizeof dev_args, "train '%s/models/housing-mlp.ini' --device tpu", root);
    rc = run(dev_args, out, sizeof out);
    CHECK(rc == 2 && strstr(out, "unknown device 'tpu'"), "--device tpu (rc %d): %s", rc, out);
    snprintf(dev_args, sizeof dev_args, "train '%s/models/housing-mlp.ini' --device cuda --out '%s/dev'", root, tmp);
    rc = run(dev_args, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "--device cuda: cannot run on cuda: ") && strchr(out, '\n') == out + strlen(out) - 1,
          "--device cuda (rc %d): %s", rc, out);
    test_summaries();
    test_gpt2();
    test_precision_and_init_misuse();
    test_malformed();
    test_train_eval();
    test_predict();
    test_resume();
    test_signal(SIGINT, 130);
    test_signal(SIGTERM, 143);
    write_corpus();
    test_lm("gpt", TINY_GPT, "optimizer = adamw\nlr = 3e-3\nweight_decay = 0.1\n");
    test_lm("lstm", TINY_LSTM, "optimizer = adam\nlr = 1e-2\n");
    test_seq2seq();
    test_lm_tokenizers();
    test_lm_misuse();
    test_lm_malformed();

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return check_finish("test_cli");
}
