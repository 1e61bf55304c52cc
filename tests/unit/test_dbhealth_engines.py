"""What each engine's errors mean for the acking path (bot/state/dbhealth.py): another writer
in the way (LOCKED), a full disk (FULL), a server that cannot be reached (UNREACHABLE); any
other error is a bug, not a state of the machine (None)."""

import sqlite3

import psycopg
import psycopg_pool
import pytest

from bot.state.dbhealth import FULL, LOCKED, UNREACHABLE, problem_of


@pytest.mark.parametrize(
    ("exc", "problem"),
    [
        (sqlite3.OperationalError("database is locked"), LOCKED),
        (sqlite3.OperationalError("database or disk is full"), FULL),
        (sqlite3.IntegrityError("UNIQUE constraint failed"), None),
        (psycopg.errors.LockNotAvailable("lock timeout"), LOCKED),
        (psycopg.errors.DeadlockDetected("deadlock detected"), LOCKED),
        (psycopg.errors.SerializationFailure("could not serialize"), LOCKED),
        (psycopg.errors.DiskFull("could not extend file"), FULL),
        (psycopg.OperationalError("server closed the connection unexpectedly"), UNREACHABLE),
        (psycopg.errors.AdminShutdown("terminating connection"), UNREACHABLE),
        (psycopg.errors.CannotConnectNow("the database system is starting up"), UNREACHABLE),
        (psycopg.InterfaceError("the connection is closed"), UNREACHABLE),
        (psycopg_pool.PoolTimeout("couldn't get a connection after 2.00 sec"), UNREACHABLE),
        (psycopg.errors.UniqueViolation("duplicate key"), None),
        (psycopg.errors.UndefinedColumn("column does not exist"), None),
        (ValueError("x"), None),
    ],
)
def test_problem_of_each_engines_errors(exc, problem):
    assert problem_of(exc) == problem
