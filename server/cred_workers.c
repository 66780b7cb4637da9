/*
 * cred_workers.c: a fixed pool of threads for blocking credential work
 * (cred_workers.h).
 */
#include "internal.h"

#include "cred_workers.h"

#include <pthread.h>
#include <stdlib.h>

struct job {
    struct job *next;
    void (*fn)(void *arg);
    void *arg;
};

struct sg_cred_workers {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct job *head;
    struct job *tail;
    bool stopping;
    pthread_t *threads;
    unsigned n_threads;
};

static void *worker_main(void *opaque)
{
    struct sg_cred_workers *w = opaque;

    pthread_setname_np(pthread_self(), "sg-cred");
    for (;;) {
        struct job *job;

        pthread_mutex_lock(&w->lock);
        while (!w->head && !w->stopping)
            pthread_cond_wait(&w->wake, &w->lock);
        job = w->head;
        if (job) {
            w->head = job->next;
            if (!w->head)
                w->tail = NULL;
        }
        pthread_mutex_unlock(&w->lock);
        if (!job)
            break; /* stopping and nothing is left */
        job->fn(job->arg);
        free(job);
    }
    return NULL;
}

struct sg_cred_workers *sg_cred_workers_start(unsigned n_threads,
                                              struct sg_error *err)
{
    struct sg_cred_workers *w = calloc(1, sizeof(*w));

    if (!w) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    if (n_threads == 0)
        n_threads = 2;
    w->threads = calloc(n_threads, sizeof(*w->threads));
    if (!w->threads) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        sg_cred_workers_stop(w);
        return NULL;
    }
    for (unsigned i = 0; i < n_threads; i++) {
        if (pthread_create(&w->threads[i], NULL, worker_main, w) != 0) {
            sg_error_report(err, SG_ERR_INTERNAL,
                            "cannot start a credential worker thread");
            sg_cred_workers_stop(w);
            return NULL;
        }
        w->n_threads++;
    }
    return w;
}

int sg_cred_workers_run(struct sg_cred_workers *w, void (*fn)(void *arg),
                        void *arg, struct sg_error *err)
{
    struct job *job = malloc(sizeof(*job));

    if (!job) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    *job = (struct job){.fn = fn, .arg = arg};
    pthread_mutex_lock(&w->lock);
    if (w->stopping) {
        pthread_mutex_unlock(&w->lock);
        free(job);
        sg_error_report(err, SG_ERR_UNAVAILABLE, "the gateway is stopping");
        return -1;
    }
    if (w->tail)
        w->tail->next = job;
    else
        w->head = job;
    w->tail = job;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

void sg_cred_workers_stop(struct sg_cred_workers *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
    for (unsigned i = 0; i < w->n_threads; i++)
        pthread_join(w->threads[i], NULL);
    free(w->threads);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
