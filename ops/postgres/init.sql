-- One database per service (the catalog's is created by POSTGRES_DB).
-- Run once by the postgres image on an empty volume (docker-compose.yml).
CREATE DATABASE users;
CREATE DATABASE orders;
CREATE DATABASE payments;
CREATE DATABASE notifications;
CREATE DATABASE card_processor;
