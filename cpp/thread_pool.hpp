// A small thread pool of our own: callers join their own jobs, so concurrent searches never deadlock.
#pragma once

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fastattr {

// CPUs this process may run on (respects taskset and container CPU sets), at least 1.
inline int available_cpus() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        const int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    const unsigned n = std::thread::hardware_concurrency();
    return n > 0 ? static_cast<int>(n) : 1;
}

// Why not OpenMP: faiss with two OpenMP threads ran a single query 2x slower here (DESIGN.md §7), and
// an OpenMP runtime in a Python extension fights with the ones numpy or torch bring.
class ThreadPool {
public:
    // The process-wide pool. A forked child gets a fresh one: the parent's workers do not exist there.
    static ThreadPool& instance() {
        static std::mutex guard;
        static ThreadPool* pool = nullptr;
        std::lock_guard<std::mutex> lock(guard);
        if (pool == nullptr || pool->pid_ != ::getpid()) pool = new ThreadPool();  // never freed: see above
        return *pool;
    }

    // Runs fn(task, slot) for task in [0, n_tasks) on at most max_slots threads, the caller included
    // as slot 0; slots are distinct among concurrently running calls of one job, so per-slot state
    // needs no lock. Tasks are handed out in increasing order. Rethrows the first exception a task
    // threw (later ones are dropped) after stopping the hand-out of further tasks.
    void run(int n_tasks, int max_slots, const std::function<void(int, int)>& fn) {
        if (n_tasks <= 0) return;
        max_slots = std::max(1, std::min(max_slots, n_tasks));
        if (max_slots == 1) {
            for (int task = 0; task < n_tasks; ++task) fn(task, 0);
            return;
        }
        ensure_workers(max_slots - 1);
        Job job;
        job.fn = &fn;
        job.n_tasks = n_tasks;
        job.max_slots = max_slots;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            jobs_.push_back(&job);
        }
        work_ready_.notify_all();
        work(job, 0);
        std::unique_lock<std::mutex> lock(mutex_);
        // No worker can join once the job is off the queue; wait for those that did.
        jobs_.erase(std::remove(jobs_.begin(), jobs_.end(), &job), jobs_.end());
        job_done_.wait(lock, [&] { return job.active == 0; });
        if (job.error) std::rethrow_exception(job.error);
    }

private:
    struct Job {
        const std::function<void(int, int)>* fn = nullptr;
        int n_tasks = 0;
        int max_slots = 0;
        std::atomic<int> next_task{0};
        int next_slot = 1;  // guarded by mutex_
        int active = 0;     // workers inside work(); guarded by mutex_
        std::exception_ptr error;
        std::mutex error_mutex;
    };

    ThreadPool() : pid_(::getpid()) {}

    void ensure_workers(int n) {
        std::lock_guard<std::mutex> lock(mutex_);
        while (static_cast<int>(workers_.size()) < n) workers_.emplace_back([this] { worker_loop(); });
    }

    static void work(Job& job, int slot) {
        for (int task = job.next_task.fetch_add(1); task < job.n_tasks; task = job.next_task.fetch_add(1)) {
            try {
                (*job.fn)(task, slot);
            } catch (...) {
                std::lock_guard<std::mutex> lock(job.error_mutex);
                if (!job.error) job.error = std::current_exception();
                job.next_task.store(job.n_tasks);  // stop handing out work
            }
        }
    }

    void worker_loop() {
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            work_ready_.wait(lock, [&] { return !jobs_.empty(); });
            Job* job = jobs_.front();
            const int slot = job->next_slot++;
            if (slot >= job->max_slots || job->next_task.load() >= job->n_tasks) {
                jobs_.pop_front();  // enough helpers, or nothing left to hand out
                continue;
            }
            ++job->active;
            lock.unlock();
            work(*job, slot);
            lock.lock();
            if (--job->active == 0) job_done_.notify_all();
        }
    }

    pid_t pid_;
    std::mutex mutex_;
    std::condition_variable work_ready_, job_done_;
    std::deque<Job*> jobs_;
    std::vector<std::thread> workers_;
};

}  // namespace fastattr
